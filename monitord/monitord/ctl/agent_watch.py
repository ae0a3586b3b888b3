"""``send --wait``: did the agent that took the command go away before answering it?

A DELIVERED response names the agent connection whose stream carried it
(``CommandResponseMessage.connection``); a presence record saying DISCONNECTED or STALE for that
connection or a newer one means the agent holding the command is gone. Whether and when it comes
back nobody knows, so ``send --wait`` stops waiting then (exit 3) instead of waiting for an answer
that may take arbitrarily long. The final status is still written when the agent reconnects (FAILED
if it restarted meanwhile).

Without connection numbers (an older agent or server) the log order decides instead: an ended
record from the server that forwarded the DELIVERED, read after it. Presence records are read from
the end of ``agent-status`` as of before the command was produced, as the responses are.
"""

from __future__ import annotations

from monitord.presence_order import ENDED, ends_connection
from monitoring.v1 import monitoring_pb2 as pb


class AgentWatch:
    """Follows one command's DELIVERED response and its agent's presence records, in reading order."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        #: The connection that took the command (0: unknown); set by :meth:`delivered`.
        self.connection = 0
        self._delivered = False
        self._delivered_by = ""
        # Ended records read before the DELIVERED: the two topics are read in no fixed order, so
        # the end of the connection that took the command may be read first.
        self._early: list[pb.AgentStatus] = []

    def delivered(self, response: pb.CommandResponseMessage, server_id: str = "") -> pb.AgentStatus | None:
        """A DELIVERED response (forwarded by ``server_id``); the record that already shows the agent gone, if any."""
        if self._delivered:
            # A repeat after a reconnect: the agent still holds the command on that newer connection.
            self.connection = max(self.connection, response.connection)
            return None
        self._delivered, self.connection, self._delivered_by = True, response.connection, server_id
        early, self._early = self._early, []
        return next((status for status in early if ends_connection(status, self.connection)), None)

    def presence(self, status: pb.AgentStatus, server_id: str = "") -> pb.AgentStatus | None:
        """A presence record (of any agent); ``status`` itself if it shows the command's agent gone."""
        if status.agent_id != self.agent_id or status.state not in ENDED:
            return None
        if not self._delivered:
            if status.connection > 0:
                self._early.append(status)
            return None
        if self.connection > 0 and status.connection > 0:
            return status if status.connection >= self.connection else None
        # No numbers to compare: read after the DELIVERED, from the server that forwarded it.
        origin = status.server_id or server_id
        if self._delivered_by and origin and origin != self._delivered_by:
            return None
        return status

"""Keeping the compacted ``agent-status`` topic right when another server's news comes late.

When an agent moves from server A to server B and A notices the old stream only later (it was
suspended, a network cut was silent), A's DISCONNECTED lands in the log after B's CONNECTED.
Readers order records by connection number (:mod:`monitord.presence_order`), but compaction keeps
only the last record per agent -- A's. So every instance reads ``agent-status`` live and hands each
record to :meth:`PresenceGuard.on_status`; the instance that holds a newer stream of that agent
publishes CONNECTED for it again, and the log ends with the state that holds.
"""

from __future__ import annotations

import logging

from monitord.presence_order import ENDED
from monitord.publishers import PresencePublisher
from monitord.sessions import SessionRegistry, announce
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import shown

log = logging.getLogger(__name__)


class PresenceGuard:
    """Answers an outdated DISCONNECTED/STALE of an agent this instance holds with CONNECTED again."""

    def __init__(self, sessions: SessionRegistry, presence: PresencePublisher) -> None:
        #: The sessions of this instance (whose streams it may speak for).
        self.sessions = sessions
        self._presence = presence
        #: CONNECTED records published again (for tests and the log).
        self.republished = 0

    def on_status(self, status: pb.AgentStatus) -> None:
        """One record of ``agent-status`` (any instance's), in log order; call on the event loop.

        Acts only when both connection numbers are known: with 0 on either side the log order is
        the rule, and there is no telling which stream is newer. This instance's own records are
        left alone: the session registry already follows a replaced stream's DISCONNECTED with
        the newer stream's CONNECTED.
        """
        if status.state not in ENDED or status.connection == 0:
            return
        if status.server_id == self._presence.server_id:
            return
        session = self.sessions.get(status.agent_id)
        if session is None or session.connection <= status.connection:
            return
        log.info(
            "Agent '%s': server %s reports connection %d %s; this server holds its newer connection %d: "
            "publishing CONNECTED again",
            shown(status.agent_id),
            shown(status.server_id) or "?",
            status.connection,
            pb.AgentPresence.Name(status.state),
            session.connection,
        )
        announce(self._presence, session, pb.CONNECTED, "")
        self.republished += 1

"""Which of two presence records of one agent tells its present state: the one ordering rule.

``agent-status`` is written by every monitord instance an agent ever streamed to, so log order
alone is not the order of events: a server that notices a dead stream late (it was suspended, the
network cut was silent) publishes its DISCONNECTED after the newer server's CONNECTED. Each record
therefore carries the agent's connection number (``AgentStatus.connection``: per agent, strictly
increasing for every stream the agent opens). The rule, used by ``monitorctl agents``,
``monitorctl send --wait`` and monitord's presence guard alike:

1. the higher connection wins;
2. for the same connection, DISCONNECTED or STALE beat CONNECTED (a stream ends after it began);
3. with connection 0 on either side (an older agent or server), the later record in the log wins.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from monitoring.v1 import monitoring_pb2 as pb

#: States that end a connection.
ENDED = frozenset({pb.DISCONNECTED, pb.STALE})


def supersedes(current: pb.AgentStatus, later: pb.AgentStatus) -> bool:
    """Whether ``later`` (read after ``current`` in the log, same agent) replaces it as the agent's state."""
    if current.connection == 0 or later.connection == 0:
        return True
    if later.connection != current.connection:
        return later.connection > current.connection
    return later.state in ENDED or current.state not in ENDED


def newer(a: pb.AgentStatus, b: pb.AgentStatus) -> pb.AgentStatus:
    """The one of ``a`` and ``b`` (``b`` read later) that tells the agent's state."""
    return b if supersedes(a, b) else a


def keep_latest(latest: MutableMapping[str, pb.AgentStatus], status: pb.AgentStatus) -> bool:
    """Fold ``status`` (the next record in log order) into ``latest`` (by agent id); whether it won."""
    current = latest.get(status.agent_id)
    if current is not None and not supersedes(current, status):
        return False
    latest[status.agent_id] = status
    return True


def latest_presence(statuses: Iterable[pb.AgentStatus]) -> dict[str, pb.AgentStatus]:
    """The state per agent id of ``statuses``, given in log order."""
    latest: dict[str, pb.AgentStatus] = {}
    for status in statuses:
        keep_latest(latest, status)
    return latest


def ends_connection(status: pb.AgentStatus, connection: int) -> bool:
    """Whether ``status`` says that agent connection ``connection`` (or a newer one) is gone.

    False when either number is 0: then only the log order can tell (the caller knows it).
    """
    return status.state in ENDED and connection > 0 and status.connection >= connection

"""The ordering rule of presence records: connection number first, then ended beats connected, else log order."""

from __future__ import annotations

import pytest

from monitord.presence_order import ends_connection, keep_latest, latest_presence, newer, supersedes
from monitoring.v1 import monitoring_pb2 as pb


def status(
    state: pb.AgentPresence.ValueType, connection: int, server: str = "s1", agent: str = "web-1"
) -> pb.AgentStatus:
    return pb.AgentStatus(agent_id=agent, state=state, connection=connection, server_id=server)


@pytest.mark.parametrize(
    ("earlier", "later", "wins"),
    [
        # The higher connection wins, whichever comes first in the log.
        (status(pb.CONNECTED, 6, "b"), status(pb.DISCONNECTED, 5, "a"), False),
        (status(pb.STALE, 5, "a"), status(pb.CONNECTED, 6, "b"), True),
        (status(pb.DISCONNECTED, 7), status(pb.CONNECTED, 6), False),
        # Same connection: an ended stream beats its CONNECTED, never the other way round.
        (status(pb.CONNECTED, 5), status(pb.DISCONNECTED, 5), True),
        (status(pb.CONNECTED, 5), status(pb.STALE, 5), True),
        (status(pb.DISCONNECTED, 5), status(pb.CONNECTED, 5), False),
        (status(pb.CONNECTED, 5), status(pb.CONNECTED, 5), True),
        (status(pb.DISCONNECTED, 5), status(pb.STALE, 5), True),
        # Connection 0 on either side: log order.
        (status(pb.CONNECTED, 6), status(pb.DISCONNECTED, 0), True),
        (status(pb.DISCONNECTED, 0), status(pb.CONNECTED, 3), True),
        (status(pb.DISCONNECTED, 0), status(pb.CONNECTED, 0), True),
        (status(pb.CONNECTED, 0), status(pb.DISCONNECTED, 0), True),
    ],
)
def test_supersedes(earlier: pb.AgentStatus, later: pb.AgentStatus, wins: bool) -> None:
    assert supersedes(earlier, later) is wins
    assert newer(earlier, later) is (later if wins else earlier)


def test_latest_presence_per_agent_in_log_order() -> None:
    log = [
        status(pb.CONNECTED, 5, "a"),
        status(pb.CONNECTED, 1, "a", agent="db-1"),
        status(pb.CONNECTED, 6, "b"),
        status(pb.DISCONNECTED, 5, "a"),  # A noticed the old stream late
        status(pb.DISCONNECTED, 1, "a", agent="db-1"),
    ]
    latest = latest_presence(log)
    assert (latest["web-1"].state, latest["web-1"].server_id, latest["web-1"].connection) == (pb.CONNECTED, "b", 6)
    assert latest["db-1"].state == pb.DISCONNECTED


def test_keep_latest_says_whether_the_record_won() -> None:
    latest: dict[str, pb.AgentStatus] = {}
    assert keep_latest(latest, status(pb.CONNECTED, 6))
    assert not keep_latest(latest, status(pb.DISCONNECTED, 5))
    assert keep_latest(latest, status(pb.DISCONNECTED, 6))
    assert latest["web-1"].state == pb.DISCONNECTED


@pytest.mark.parametrize(
    ("record", "connection", "ends"),
    [
        (status(pb.DISCONNECTED, 5), 5, True),
        (status(pb.STALE, 6), 5, True),
        (status(pb.DISCONNECTED, 4), 5, False),
        (status(pb.CONNECTED, 6), 5, False),
        (status(pb.DISCONNECTED, 0), 5, False),
        (status(pb.DISCONNECTED, 5), 0, False),
    ],
)
def test_ends_connection(record: pb.AgentStatus, connection: int, ends: bool) -> None:
    assert ends_connection(record, connection) is ends

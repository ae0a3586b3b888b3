"""``send --wait``'s watch: the agent that took a command went away before answering it."""

from __future__ import annotations

from monitord.ctl.agent_watch import AgentWatch
from monitoring.v1 import monitoring_pb2 as pb


def delivered(connection: int) -> pb.CommandResponseMessage:
    return pb.CommandResponseMessage(command_id="c1", agent_id="web-1", status=pb.DELIVERED, connection=connection)


def presence(
    state: pb.AgentPresence.ValueType, connection: int, server: str = "b", agent: str = "web-1"
) -> pb.AgentStatus:
    return pb.AgentStatus(agent_id=agent, state=state, connection=connection, server_id=server)


def test_the_end_of_the_delivering_connection_or_a_newer_one() -> None:
    watch = AgentWatch("web-1")
    assert watch.delivered(delivered(6), "b") is None and watch.connection == 6
    assert watch.presence(presence(pb.CONNECTED, 7)) is None
    assert watch.presence(presence(pb.DISCONNECTED, 5, "a")) is None  # an older connection, reported late
    assert watch.presence(presence(pb.DISCONNECTED, 6, agent="web-2")) is None  # another agent
    gone = presence(pb.STALE, 6)
    assert watch.presence(gone) is gone
    assert watch.presence(presence(pb.DISCONNECTED, 8, "c")) is not None


def test_an_end_read_before_the_delivered() -> None:
    watch = AgentWatch("web-1")
    early = presence(pb.DISCONNECTED, 6)
    assert watch.presence(presence(pb.DISCONNECTED, 5)) is None
    assert watch.presence(early) is None  # not delivered yet: kept
    assert watch.presence(presence(pb.DISCONNECTED, 0)) is None  # no number, before: about an older stream
    assert watch.delivered(delivered(6), "b") is early


def test_a_repeated_delivered_on_a_newer_connection_moves_the_watch() -> None:
    watch = AgentWatch("web-1")
    watch.delivered(delivered(6), "b")
    assert watch.delivered(delivered(7), "b") is None  # the agent reconnected and still holds it
    assert watch.presence(presence(pb.DISCONNECTED, 6)) is None
    assert watch.presence(presence(pb.DISCONNECTED, 7)) is not None


def test_without_numbers_an_end_after_the_delivered_from_the_same_server() -> None:
    watch = AgentWatch("web-1")
    watch.delivered(delivered(0), "b")
    assert watch.presence(presence(pb.DISCONNECTED, 0, "a")) is None  # another server: an older stream
    assert watch.presence(presence(pb.DISCONNECTED, 0, "b")) is not None
    unknown = AgentWatch("web-1")
    unknown.delivered(delivered(0))  # the forwarding server is not known: any end counts
    assert unknown.presence(presence(pb.STALE, 4, "a")) is not None

"""``monitorctl agents``: the latest presence record per agent (fake Kafka)."""

from __future__ import annotations

import json

import pytest

from monitord.ctl import cli
from monitord.ctl.agents import age_seconds, format_age, read_presence, select, table
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.ctl import NOW, FakeConsumer, FakeKafka, output


def status(agent_id: str, state: pb.AgentPresence.ValueType, at: float, **fields: str) -> pb.AgentStatus:
    message = pb.AgentStatus(agent_id=agent_id, state=state)
    for name, value in fields.items():
        setattr(message, name, value)
    message.at.FromNanoseconds(int(at * 1e9))
    return message


def presence_fixture() -> FakeKafka:
    kafka = FakeKafka()
    topic = "agent-status"
    kafka.add(topic, status("web-1", pb.CONNECTED, NOW - 100, server_id="m1", hostname="web-1.lan"), "web-1")
    kafka.add(topic, status("web-2", pb.CONNECTED, NOW - 5000, server_id="m1"), "web-2")
    kafka.add(
        topic,
        status("web-1", pb.DISCONNECTED, NOW - 30, server_id="m1", hostname="web-1.lan", reason="goodbye"),
        "web-1",
    )
    kafka.add(
        topic,
        status("db-1", pb.STALE, NOW - 7, server_id="m2", hostname="db", agent_version="0.1.0"),
        "db-1",
        encoding="json",
    )
    kafka.add(topic, status("gone", pb.CONNECTED, NOW), "gone")
    kafka.append(topic, b"gone", None)  # tombstone
    return kafka


def test_read_presence_keeps_the_latest_per_agent() -> None:
    kafka = presence_fixture()
    latest = read_presence(FakeConsumer(kafka), "agent-status", 10, kafka.clock)
    assert {a: pb.AgentPresence.Name(s.state) for a, s in latest.items()} == {
        "web-1": "DISCONNECTED",
        "web-2": "CONNECTED",
        "db-1": "STALE",
    }
    assert [s.agent_id for s in select(latest, include_all=False)] == ["db-1", "web-2"]
    assert [s.agent_id for s in select(latest, include_all=True)] == ["db-1", "web-1", "web-2"]


def test_agents_table() -> None:
    kafka = presence_fixture()
    latest = read_presence(FakeConsumer(kafka), "agent-status", 10, kafka.clock)
    assert table(select(latest, include_all=True), NOW) == [
        "AGENT  STATE         SERVER  HOST       VERSION  SINCE      REASON",
        "db-1   STALE         m2      db         0.1.0    7s ago",
        "web-1  DISCONNECTED  m1      web-1.lan  -        30s ago    goodbye",
        "web-2  CONNECTED     m1      -          -        1h23m ago",
    ]


def test_agents_command_output() -> None:
    kafka = presence_fixture()
    o, out, err = output()
    assert cli.run(cli.parse_args(["agents"]), kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW) == 0
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["AGENT", "db-1", "web-2"]
    assert "1 disconnected agent(s) not shown" in err.getvalue()
    o, out, _ = output(json_mode=True)
    assert cli.run(cli.parse_args(["agents", "--all"]), kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["type"], x["record"]["agentId"], x["record"]["state"], x["age_seconds"]) for x in lines] == [
        ("agent", "db-1", "STALE", 7.0),
        ("agent", "web-1", "DISCONNECTED", 30.0),
        ("agent", "web-2", "CONNECTED", 5000.0),
    ]


def test_agents_on_an_empty_topic() -> None:
    kafka = FakeKafka()
    o, out, _ = output()
    assert cli.run(cli.parse_args(["agents"]), kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW) == 0
    assert out.getvalue().split() == ["AGENT", "STATE", "SERVER", "HOST", "VERSION", "SINCE", "REASON"]


def test_age_is_never_negative() -> None:
    assert age_seconds(status("a", pb.CONNECTED, NOW + 2), NOW) == 0.0
    assert age_seconds(pb.AgentStatus(agent_id="a"), NOW) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3660, "1h01m"), (2 * 86400, "2d")],
)
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def test_a_late_disconnect_of_an_older_connection_does_not_win() -> None:
    kafka = FakeKafka()
    topic = "agent-status"

    def numbered(state: pb.AgentPresence.ValueType, connection: int, server: str, at: float) -> pb.AgentStatus:
        message = status("web-1", state, at, server_id=server)
        message.connection = connection
        return message

    kafka.add(topic, numbered(pb.CONNECTED, 5, "a", NOW - 100), "web-1")
    kafka.add(topic, numbered(pb.CONNECTED, 6, "b", NOW - 20), "web-1")  # the agent moved to b
    kafka.add(topic, numbered(pb.DISCONNECTED, 5, "a", NOW - 10), "web-1")  # a noticed late
    o, out, _ = output()
    assert cli.run(cli.parse_args(["agents"]), kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW) == 0
    assert out.getvalue().splitlines()[1].split() == ["web-1", "CONNECTED", "b", "-", "-", "20s", "ago"]
    # Without numbers (older servers) the log order still decides.
    kafka.add(topic, status("web-1", pb.DISCONNECTED, NOW - 5, server_id="a"), "web-1")
    latest = read_presence(FakeConsumer(kafka), topic, 10, kafka.clock)
    assert latest["web-1"].state == pb.DISCONNECTED

"""monitorctl's subcommands against an in-memory fake Kafka (the factories are passed in).

The fake keeps one log per partition; a consumer reads from the offsets it was assigned and
advances a fake clock by its timeout when there is nothing to read, so waits end instantly.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from monitord import records
from monitord.config import KafkaSection
from monitord.ctl import cli
from monitord.ctl.agents import age_seconds, format_age, read_presence, select, table
from monitord.ctl.errors import KafkaUnavailable
from monitord.ctl.kafka_io import KafkaClients, read_to_end
from monitord.ctl.output import Output
from monitord.ctl.send import SendRequest, run_send
from monitord.ctl.tail import run_tail
from monitoring.v1 import monitoring_pb2 as pb

NOW = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]] | None

    def error(self) -> None:
        return None

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


@dataclass
class FakeKafka:
    """Topics with partitions; ``on_produce`` hooks play monitord/agents answering."""

    partitions: int = 3
    clock: FakeClock = field(default_factory=FakeClock)
    logs: dict[str, list[list[FakeMessage]]] = field(default_factory=dict)
    on_produce: list[Callable[[FakeMessage], None]] = field(default_factory=list)
    delivery_error: str | None = None
    produced: list[FakeMessage] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for topic in ("monitoring-data", "command-responses", "commands", "agent-status"):
            self.logs[topic] = [[] for _ in range(self.partitions)]

    def append(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> FakeMessage:
        log = self.logs[topic]
        partition = zlib.crc32(key or b"") % len(log)
        msg = FakeMessage(topic, partition, len(log[partition]), key, value, headers)
        log[partition].append(msg)
        return msg

    def add(self, topic: str, message: Any, agent_id: str, encoding: str = "protobuf") -> FakeMessage:
        key, value, headers = records.encode(message, agent_id=agent_id, server_id="test", encoding=encoding)  # type: ignore[arg-type]
        return self.append(topic, key, value, headers)

    def metadata(self, topic: str) -> Any:
        if topic not in self.logs:
            return SimpleNamespace(topics={topic: SimpleNamespace(partitions={}, error="Unknown topic or partition")})
        parts = {p: None for p in range(len(self.logs[topic]))}
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=parts, error=None)})

    def clients(self, kafka: KafkaSection | None = None) -> KafkaClients:
        return KafkaClients(kafka or KafkaSection(), self.consumer, self.producer)

    def consumer(self, conf: dict[str, Any]) -> FakeConsumer:
        self.configs.append(conf)
        return FakeConsumer(self)

    def producer(self, conf: dict[str, Any]) -> FakeProducer:
        self.configs.append(conf)
        return FakeProducer(self)


class FakeConsumer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.positions: dict[tuple[str, int], int] = {}
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        return self.kafka.metadata(topic)

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, len(self.kafka.logs[partition.topic][partition.partition])

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = {
            (tp.topic, tp.partition): 0 if tp.offset == OFFSET_BEGINNING else tp.offset for tp in partitions
        }

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        batch: list[FakeMessage] = []
        for (topic, partition), offset in self.positions.items():
            log = self.kafka.logs[topic][partition]
            taken = log[offset : offset + num_messages - len(batch)]
            batch.extend(taken)
            self.positions[(topic, partition)] = offset + len(taken)
        if not batch:
            self.kafka.clock.now += timeout
        return batch

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.callbacks: list[Callable[[], None]] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        return self.kafka.metadata(topic)

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        error = self.kafka.delivery_error
        if error is None:
            msg = self.kafka.append(topic, key, value, headers)
            self.kafka.produced.append(msg)
            for hook in self.kafka.on_produce:
                hook(msg)
        self.callbacks.append(lambda: on_delivery(error, None))

    def poll(self, timeout: float) -> int:
        return self.flush(timeout)

    def flush(self, timeout: float) -> int:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()
        return 0


def output(json_mode: bool = False) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(out, err, json_mode), out, err


def send(kafka: FakeKafka, request: SendRequest, json_mode: bool = False) -> tuple[int, str, str]:
    o, out, err = output(json_mode)
    code = run_send(request, kafka.clients(), o, command_id="c0ffee", now=NOW, clock=kafka.clock)
    return code, out.getvalue(), err.getvalue()


def responder(kafka: FakeKafka, *replies: pb.CommandResponseMessage) -> None:
    """Answer every command on the commands topic with ``replies`` (command id filled in)."""

    def answer(msg: FakeMessage) -> None:
        if msg.topic() != "commands":
            return
        command = records.decode(msg.key(), msg.value(), msg.headers()).message
        assert isinstance(command, pb.CommandMessage)
        for reply in replies:
            response = pb.CommandResponseMessage()
            response.CopyFrom(reply)
            response.command_id = command.command_id
            response.agent_id = command.agent_id
            kafka.add("command-responses", response, command.agent_id)

    kafka.on_produce.append(answer)


# -- send -----------------------------------------------------------------------------------------


def test_send_produces_one_command_and_prints_its_id() -> None:
    kafka = FakeKafka()
    request = SendRequest(
        agent_id="web-1",
        command="echo",
        args=("-n", "x"),
        timeout_seconds=10,
        ttl_seconds=60,
        requested_by="monitorctl:alice",
    )
    code, out, err = send(kafka, request)
    assert (code, out, err) == (0, "c0ffee\n", "")
    [msg] = kafka.produced
    assert msg.topic() == "commands" and msg.key() == b"web-1"
    assert records.header(msg.headers(), "content-type") == records.JSON
    assert records.header(msg.headers(), "message-type") == "monitoring.v1.CommandMessage"
    assert records.header(msg.headers(), "server-id") == "monitorctl"
    assert records.header(msg.headers(), "agent-id") == "web-1"
    command = records.decode(msg.key(), msg.value(), msg.headers()).message
    assert isinstance(command, pb.CommandMessage)
    assert (command.command_id, command.agent_id, command.command, list(command.args)) == (
        "c0ffee",
        "web-1",
        "echo",
        ["-n", "x"],
    )
    assert (command.timeout_seconds, command.ttl_seconds, command.requested_by) == (10, 60, "monitorctl:alice")
    assert command.created_at.ToNanoseconds() == int(NOW * 1e9)
    producer_conf = kafka.configs[-1]
    assert producer_conf["enable.idempotence"] is True and producer_conf["acks"] == "all"


def test_send_protobuf_encoding() -> None:
    kafka = FakeKafka()
    send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", encoding="protobuf"))
    assert records.header(kafka.produced[0].headers(), "content-type") == records.PROTOBUF


def test_send_json_output() -> None:
    kafka = FakeKafka()
    code, out, _ = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x"), json_mode=True)
    line = json.loads(out)
    assert code == 0 and line["type"] == "command" and line["record"]["commandId"] == "c0ffee"


@pytest.mark.parametrize(
    ("status", "code"),
    [(pb.SUCCEEDED, 0), (pb.FAILED, 1), (pb.TIMED_OUT, 124), (pb.REJECTED, 126), (pb.EXPIRED, 75), (pb.INVALID, 65)],
)
def test_wait_exits_with_the_final_status(status: pb.CommandStatus.ValueType, code: int) -> None:
    kafka = FakeKafka()
    responder(kafka, pb.CommandResponseMessage(status=pb.DELIVERED), pb.CommandResponseMessage(status=status))
    got, out, _ = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True))
    assert got == code
    assert out.splitlines()[:2] == ["c0ffee", "DELIVERED to web-1"]


def test_wait_prints_responses_and_output() -> None:
    kafka = FakeKafka()
    delivered = pb.CommandResponseMessage(status=pb.DELIVERED)
    final = pb.CommandResponseMessage(
        status=pb.SUCCEEDED, exit_code=0, duration_seconds=0.01, stdout="hello\n", stderr="note", stdout_truncated=True
    )
    responder(kafka, delivered, delivered, final)  # a repeated DELIVERED is shown once
    code, out, err = send(kafka, SendRequest(agent_id="web-1", command="echo", requested_by="x", wait=True))
    assert code == 0
    assert out == "c0ffee\nDELIVERED to web-1\nSUCCEEDED exit 0 in 0.01s\nhello\n[stdout truncated by the agent]\n"
    assert err == "note\n"


def test_wait_reader_starts_at_the_end_and_ignores_other_commands() -> None:
    kafka = FakeKafka()
    # Old records: an earlier final response to a command with the same id must not count.
    kafka.add("command-responses", pb.CommandResponseMessage(command_id="c0ffee", status=pb.FAILED), "web-1")
    kafka.add("command-responses", pb.CommandResponseMessage(command_id="other", status=pb.FAILED), "web-1")

    def answer(msg: FakeMessage) -> None:
        kafka.add("command-responses", pb.CommandResponseMessage(command_id="other", status=pb.FAILED), "web-1")
        kafka.append("command-responses", b"web-1", b"garbage", [("message-type", b"monitoring.v1.Nope")])
        kafka.add("command-responses", pb.CommandResponseMessage(command_id="c0ffee", status=pb.SUCCEEDED), "web-1")

    kafka.on_produce.append(answer)
    code, _, _ = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True))
    assert code == 0


def test_wait_json_lines() -> None:
    kafka = FakeKafka()
    responder(kafka, pb.CommandResponseMessage(status=pb.DELIVERED), pb.CommandResponseMessage(status=pb.REJECTED))
    code, out, _ = send(kafka, SendRequest(agent_id="web-1", command="x", requested_by="x", wait=True), json_mode=True)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 126
    assert [(line["type"], line["record"].get("status")) for line in lines] == [
        ("command", None),
        ("response", "DELIVERED"),
        ("response", "REJECTED"),
    ]


def test_wait_without_final_response_exits_69_after_the_timeout() -> None:
    kafka = FakeKafka()
    responder(kafka, pb.CommandResponseMessage(status=pb.DELIVERED))
    request = SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True, wait_timeout=5)
    code, out, err = send(kafka, request)
    assert code == 69
    assert out == "c0ffee\nDELIVERED to web-1\n"
    assert err == "monitorctl: no final response to command c0ffee within 5s (it was delivered)\n"
    assert 5 <= kafka.clock.now <= 5.5


def test_kafka_refusing_the_command_is_69() -> None:
    kafka = FakeKafka(delivery_error="Local: Message timed out")
    with pytest.raises(KafkaUnavailable, match="Message timed out"):
        send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x"))
    o, _out, err = output()
    args = cli.parse_args(["send", "web-1", "ping"])
    assert cli.run(args, kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW, new_id=lambda: "id") == 69
    assert "Kafka unavailable" in err.getvalue() and "Message timed out" in err.getvalue()
    assert kafka.produced == []


def test_missing_topic_is_69() -> None:
    kafka = FakeKafka()
    del kafka.logs["commands"]
    o, out, err = output()
    args = cli.parse_args(["send", "web-1", "ping"])
    assert cli.run(args, kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW, new_id=lambda: "id") == 69
    assert out.getvalue() == "" and "topic 'commands': Unknown topic" in err.getvalue()


def test_run_passes_generated_id_and_requester(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "bob")
    kafka = FakeKafka()
    o, out, _ = output()
    args = cli.parse_args(["send", "web-1", "echo", "--", "-n", "x"])
    assert cli.run(args, kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW, new_id=lambda: "abc123") == 0
    command = records.decode(kafka.produced[0].key(), kafka.produced[0].value(), kafka.produced[0].headers()).message
    assert isinstance(command, pb.CommandMessage)
    assert (command.command_id, command.requested_by, list(command.args)) == ("abc123", "monitorctl:bob", ["-n", "x"])
    assert out.getvalue() == "abc123\n"


# -- agents ---------------------------------------------------------------------------------------


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


def test_read_to_end_handles_compaction_gaps_and_is_bounded() -> None:
    kafka = FakeKafka(partitions=1)
    for _ in range(3):
        kafka.append("agent-status", b"a", b"{}")
    log = kafka.logs["agent-status"][0]
    log[1]._offset, log[2]._offset = 5, 9  # compacted: offsets 0, 5, 9; high watermark 10

    class Compacted(FakeConsumer):
        def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
            return 0, 10

    assert [m.offset() for m in read_to_end(Compacted(kafka), "agent-status", 10, kafka.clock)] == [0, 5, 9]

    class Short(FakeConsumer):  # the broker claims more records than ever arrive
        def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
            return 0, 50

    with pytest.raises(KafkaUnavailable, match="within 3s"):
        list(read_to_end(Short(kafka), "agent-status", 3, kafka.clock))


# -- tail -----------------------------------------------------------------------------------------


def metrics(agent_id: str, sequence: int) -> pb.MetricsData:
    m = pb.MetricsData(agent_id=agent_id, sequence=sequence)
    m.cpu.percent = 10.0 + sequence
    m.memory.percent = 50.0
    return m


def test_tail_count_and_agent_filter() -> None:
    kafka = FakeKafka(partitions=1)
    for seq in range(1, 4):
        kafka.add("monitoring-data", metrics("web-1", seq), "web-1")
        kafka.add("monitoring-data", metrics("web-2", seq), "web-2")
    o, out, _ = output()
    assert run_tail(kafka.clients(), o, agent_id="web-2", from_beginning=True, count=2) == 0
    assert out.getvalue().splitlines() == [
        "[web-2 #1] CPU 11.0% | Memory 50.0% | Load 0.00 | Net rx 0.0 MB tx 0.0 MB",
        "[web-2 #2] CPU 12.0% | Memory 50.0% | Load 0.00 | Net rx 0.0 MB tx 0.0 MB",
    ]


def test_tail_from_the_end_shows_only_new_records() -> None:
    kafka = FakeKafka()
    kafka.add("monitoring-data", metrics("web-1", 1), "web-1")
    consumers: list[FakeConsumer] = []

    class LateRecord(FakeConsumer):
        def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
            if not kafka.produced:  # a record arriving after tail started
                kafka.produced.append(kafka.add("monitoring-data", metrics("web-1", 2), "web-1"))
            return super().consume(num_messages, timeout)

    def consumer(conf: dict[str, Any]) -> FakeConsumer:
        consumers.append(LateRecord(kafka))
        return consumers[-1]

    o, out, _ = output(json_mode=True)
    assert (
        run_tail(
            KafkaClients(KafkaSection(), consumer, kafka.producer), o, agent_id=None, from_beginning=False, count=1
        )
        == 0
    )
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["type"] == "metrics" and line["record"]["sequence"] == "2"
    assert consumers[0].closed

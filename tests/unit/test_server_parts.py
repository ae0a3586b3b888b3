"""Server building blocks: record format, the Kafka bridge (with a fake producer), journald logging."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError

from monitord import records
from monitord.config import KafkaSection
from monitord.errors import DeliveryError
from monitord.kafka_bridge import KafkaProducerBridge, producer_config
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.logsetup import JournalFormatter


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_records_round_trip(encoding: str) -> None:
    m = pb.MetricsData(agent_id="web-1", sequence=42)
    m.cpu.percent = 12.5
    key, value, headers = records.encode(m, agent_id="web-1", server_id="s1", encoding=encoding, sequence=42)  # type: ignore[arg-type]
    assert key == b"web-1"
    assert dict(headers)["message-type"] == b"monitoring.v1.MetricsData"
    assert dict(headers)["sequence"] == b"42"
    back = records.decode(key, value, headers)
    assert back.message == m and back.agent_id == "web-1" and back.server_id == "s1"


def test_decode_refuses_garbage() -> None:
    with pytest.raises(records.RecordDecodeError):
        records.decode(b"k", b"\xff\xff", [("message-type", b"monitoring.v1.MetricsData")])
    with pytest.raises(records.RecordDecodeError):
        records.decode(b"k", b"{}", [("message-type", b"nope")])


@pytest.mark.parametrize("command_id", ["c1", "x" * 123])  # field 1, length 123: the bytes start "\\n{"
def test_records_without_content_type_are_told_apart(command_id: str) -> None:
    """Hand-written producers may leave out content-type: protobuf (which starts with a newline
    byte, field 1) and JSON are both understood."""
    cmd = pb.CommandMessage(command_id=command_id, agent_id="web-1", command="ping")
    only_type = [("message-type", b"monitoring.v1.CommandMessage")]
    assert cmd.SerializeToString()[:1] == b"\n"
    assert records.decode(None, cmd.SerializeToString(), only_type).message == cmd
    text = b' {"commandId": "%s", "agentId": "web-1", "command": "ping"}' % command_id.encode()
    assert records.decode(None, text, only_type).message == cmd
    with pytest.raises(records.RecordDecodeError, match="JSON"):
        records.decode(None, b'{"agentId": ', only_type)


def test_producer_is_idempotent_with_acks_all() -> None:
    conf = producer_config(KafkaSection(producer={"security.protocol": "SSL"}), "monitord-x")  # type: ignore[arg-type]
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["security.protocol"] == "SSL"


class FakeProducer:
    """Queues records; the test decides when and how each is delivered."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.queued: list[Any] = []
        self.full = 0

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.queued.append(on_delivery)

    def deliver(self, err: KafkaError | None = None) -> None:
        self.queued.pop(0)(err, None)

    def poll(self, timeout: float) -> int:
        import time

        time.sleep(min(timeout, 0.01))
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.queued)


def test_ack_future_resolves_only_after_delivery() -> None:
    async def scenario() -> None:
        fake: list[FakeProducer] = []

        def factory(conf: dict[str, Any]) -> FakeProducer:
            fake.append(FakeProducer(conf))
            return fake[0]

        bridge = KafkaProducerBridge(KafkaSection(), client_id="t", producer_factory=factory)
        await bridge.start()
        ok = await bridge.produce("t", b"k", b"v", [])
        bad = await bridge.produce("t", b"k", b"v", [])
        await asyncio.sleep(0.1)
        assert not ok.done() and not bad.done()  # nothing acked before Kafka answers
        fake[0].deliver(None)
        fake[0].deliver(KafkaError(KafkaError._MSG_TIMED_OUT))
        await asyncio.wait_for(ok, 2)
        with pytest.raises(DeliveryError) as info:
            await asyncio.wait_for(bad, 2)
        assert info.value.retriable
        assert bridge.delivered == 1 and bridge.failed == 1 and not bridge.kafka_up
        fake[0].full = 2  # local queue full: produce waits instead of dropping
        later = await bridge.produce("t", b"k", b"v", [])
        fake[0].deliver(None)
        await asyncio.wait_for(later, 2)
        assert bridge.kafka_up
        await bridge.close(timeout=1)

    asyncio.run(scenario())


def test_journal_formatter_prefixes_every_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter("%(message)s"))
    log = logging.getLogger("test.journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("two\nlines")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["<4>two", "<4>lines"]
    assert all(line.startswith("<3>") for line in lines[2:]) and any("ValueError: boom" in line for line in lines)

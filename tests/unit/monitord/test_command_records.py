"""Commands as records: building, encoding, producing; what responses mean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from monitord import command_records, records
from monitord.errors import KafkaUnavailable
from monitoring.v1 import monitoring_pb2 as pb


def test_first_line() -> None:
    assert command_records.first_line(pb.CommandResponseMessage(stdout="\n  pong \nmore")) == "pong"
    assert command_records.first_line(pb.CommandResponseMessage(stderr="oops\n")) == "oops"
    assert command_records.first_line(pb.CommandResponseMessage()) == ""


def test_status_names() -> None:
    assert command_records.status_name(pb.SUCCEEDED) == "SUCCEEDED"
    assert command_records.status_name(99) == "STATUS_99"  # type: ignore[arg-type]


def test_command_record_is_keyed_by_agent_and_json_by_default() -> None:
    command = command_records.new_command(
        command_id="c1", agent_id="web-1", command="ping", args=["-c", "1"], requested_by="me", now=1_700_000_000.5
    )
    key, value, headers = command_records.command_record(command, source="monitorctl")
    assert key == b"web-1" and value.startswith(b"{") and ("server-id", b"monitorctl") in headers
    assert records.decode(key, value, headers).message == command


class Producer:
    """Delivery callbacks run in poll()/flush(), as librdkafka's do."""

    def __init__(self, error: str | None = None, refuse: BaseException | None = None) -> None:
        self.error, self.refuse = error, refuse
        self.callbacks: list[Callable[[], None]] = []

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.callbacks.append(lambda: on_delivery(self.error, None))

    def poll(self, timeout: float) -> int:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()
        return len(callbacks)

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return 0


def command(command_id: str = "c1") -> pb.CommandMessage:
    return pb.CommandMessage(command_id=command_id, agent_id="web-1", command="ping")


def test_command_producer_reports_each_result() -> None:
    results: list[tuple[str, str | None]] = []
    producer = command_records.CommandProducer(
        Producer(),
        "commands",
        source="t",
        encoding="json",
        on_result=lambda c, e: results.append((c.command_id, e)),
    )
    producer.send(command())
    producer.poll()
    producer.flush(1)
    assert results == [("c1", None)]


def test_command_producer_failures_raise_kafka_unavailable() -> None:
    failing = command_records.CommandProducer(
        Producer(error="Message timed out"), "commands", source="t", encoding="json"
    )
    failing.send(command())
    with pytest.raises(
        KafkaUnavailable, match="1 command\\(s\\) refused by Kafka, last: command c1: Message timed out"
    ):
        failing.flush(1)
    full = command_records.CommandProducer(
        Producer(refuse=BufferError("Queue full")), "commands", source="t", encoding="json"
    )
    with pytest.raises(KafkaUnavailable, match="cannot queue command c1: Queue full"):
        full.send(command())
    refused = command_records.CommandProducer(
        Producer(refuse=KafkaException(KafkaError(KafkaError.INVALID_CONFIG, "bad"))),
        "commands",
        source="t",
        encoding="json",
    )
    with pytest.raises(KafkaUnavailable, match="cannot queue command c1: bad"):
        refused.send(command())

    class Stuck(Producer):
        def flush(self, timeout: float) -> int:
            return 1

    stuck = command_records.CommandProducer(Stuck(), "commands", source="t", encoding="json")
    stuck.send(command())
    with pytest.raises(KafkaUnavailable, match="1 command\\(s\\) not confirmed by Kafka"):
        stuck.flush(0.1)

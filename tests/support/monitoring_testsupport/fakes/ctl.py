"""An in-memory fake Kafka for monitorctl's subcommands (the factories are passed in).

The fake keeps one log per partition; a consumer reads from the offsets it was assigned and
advances a fake clock by its timeout when there is nothing to read, so waits end instantly.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from monitord import records
from monitord.config import KafkaSection
from monitord.ctl.output import Output
from monitord.kafka_clients import KafkaClients
from monitoring_testsupport.fakes.kafka import FakeMessage as FakeMessage

NOW = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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
        msg = FakeMessage(topic, key, value, headers, _partition=partition, _offset=len(log[partition]))
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

"""Kafka access for monitorctl and the analyzer's rules, in one place.

Clients are made by factories passed in (``confluent_kafka.Consumer``/``Producer`` for real, fakes
in unit tests). Readers never join a consumer group: they ``assign`` partitions at offsets they
chose themselves, which is fast (no rebalance) and exact -- ``send --wait`` positions its reader at
the high watermarks *before* producing, so it cannot miss a response that arrives quickly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from monitord.config import KafkaSection, kafka_client_settings
from monitord.ctl.command_message import command_record
from monitord.ctl.errors import KafkaUnavailable
from monitord.kafka_bridge import producer_config
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)

#: Records fetched per ``consume`` call.
BATCH = 500


class MessageLike(Protocol):
    """The part of ``confluent_kafka.Message`` we read."""

    def error(self) -> Any: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


class MetadataSource(Protocol):
    """Any client that can describe topics (consumer and producer alike)."""

    def list_topics(self, topic: str, timeout: float) -> Any: ...


class ConsumerLike(MetadataSource, Protocol):
    """The part of ``confluent_kafka.Consumer`` we use (no subscribe: partitions are assigned)."""

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int] | None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> Sequence[MessageLike]: ...
    def close(self) -> None: ...


class ProducerLike(MetadataSource, Protocol):
    """The part of ``confluent_kafka.Producer`` we use."""

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]
ProducerFactory = Callable[[dict[str, Any]], ProducerLike]


@dataclass(frozen=True)
class KafkaClients:
    """Makes configured consumers and producers; ``timeout`` bounds each metadata request."""

    kafka: KafkaSection
    consumer_factory: ConsumerFactory
    producer_factory: ProducerFactory
    client_id: str = "monitorctl"
    timeout: float = 10.0
    #: Where librdkafka's own log lines go (None: librdkafka prints them to stderr itself).
    logger: logging.Logger | None = None

    @classmethod
    def real(cls, kafka: KafkaSection, client_id: str, logger: logging.Logger | None = None) -> KafkaClients:
        """Clients backed by confluent-kafka."""
        import confluent_kafka

        return cls(kafka, confluent_kafka.Consumer, confluent_kafka.Producer, client_id, logger=logger)

    def consumer(self) -> ConsumerLike:
        # group.id is required by the client but unused: we assign, never subscribe or commit.
        conf: dict[str, Any] = {
            **kafka_client_settings(self.kafka),
            "bootstrap.servers": self.kafka.bootstrap_servers,
            "group.id": self.client_id,
            "client.id": self.client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        if self.logger is not None:
            conf["logger"] = self.logger
        return self.consumer_factory(conf)

    def producer(self) -> ProducerLike:
        """Idempotent, acks=all, with ``kafka.producer`` pass-through properties (as monitord's)."""
        conf = producer_config(self.kafka, self.client_id)
        if self.logger is not None:
            conf["logger"] = self.logger
        return self.producer_factory(conf)


def _text(error: object) -> str:
    """The readable text of a KafkaError (its ``str()`` method), not the ``KafkaError{...}`` repr."""
    method = getattr(error, "str", None)
    return str(method()) if callable(method) else str(error)


def _reason(exc: KafkaException) -> str:
    return _text(exc.args[0] if exc.args else exc)


# -- reading --------------------------------------------------------------------------------------


def partitions_of(client: MetadataSource, topic: str, timeout: float) -> list[int]:
    """The partition numbers of ``topic``; :class:`KafkaUnavailable` if Kafka or the topic is missing."""
    try:
        meta = client.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read metadata of topic {topic!r}: {_reason(exc)}") from None
    described = meta.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        why = _text(described.error) if described is not None and described.error is not None else "no such topic"
        raise KafkaUnavailable(f"topic {topic!r}: {why}")
    return sorted(described.partitions)


def watermarks(consumer: ConsumerLike, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` for every partition of ``topic``, as the broker has them now."""
    marks: dict[int, tuple[int, int]] = {}
    for partition in partitions_of(consumer, topic, timeout):
        try:
            got = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read offsets of {topic}[{partition}]: {_reason(exc)}") from None
        if got is None:
            raise KafkaUnavailable(f"no offsets for {topic}[{partition}] within {timeout:g}s")
        marks[partition] = (int(got[0]), int(got[1]))
    return marks


def assign(consumer: ConsumerLike, topic: str, timeout: float, start: Literal["beginning", "end"]) -> dict[int, int]:
    """Assign every partition of ``topic`` at its beginning or current end; returns the high watermarks.

    The end is the high watermark read now (an explicit offset, not ``OFFSET_END``, which would be
    resolved later and could skip records produced in between).
    """
    marks = watermarks(consumer, topic, timeout)
    consumer.assign(
        [
            TopicPartition(topic, partition, OFFSET_BEGINNING if start == "beginning" else high)
            for partition, (_low, high) in marks.items()
        ]
    )
    return {partition: high for partition, (_low, high) in marks.items()}


def poll_batch(consumer: ConsumerLike, timeout: float) -> list[MessageLike]:
    """The next records (possibly none within ``timeout``); broker-side errors are logged and skipped."""
    batch: list[MessageLike] = []
    for msg in consumer.consume(BATCH, timeout=timeout):
        if msg.error():
            log.warning("Kafka consumer error: %s", msg.error())
            continue
        batch.append(msg)
    return batch


def read_to_end(
    consumer: ConsumerLike, topic: str, timeout: float, clock: Callable[[], float]
) -> Iterator[MessageLike]:
    """Every record of ``topic`` from the beginning up to the end as of the call; bounded by ``timeout``.

    A compacted topic has gaps in its offsets, so a partition is done when a record at or past
    ``high - 1`` was read (the newest record of a partition is never compacted away).
    """
    ends = assign(consumer, topic, timeout, "beginning")
    pending = {partition for partition, high in ends.items() if high > 0}
    deadline = clock() + timeout
    while pending:
        remaining = deadline - clock()
        if remaining <= 0:
            raise KafkaUnavailable(f"could not read {topic} to its end within {timeout:g}s")
        for msg in poll_batch(consumer, min(remaining, 0.5)):
            partition, offset = msg.partition(), msg.offset()
            if partition is not None and offset is not None and offset >= ends.get(partition, 0) - 1:
                pending.discard(partition)
            yield msg


# -- producing ------------------------------------------------------------------------------------


DeliveryCallback = Callable[[pb.CommandMessage, str | None], None]


class CommandProducer:
    """Produces CommandMessages to the commands topic (key = agent id, :func:`command_record`).

    ``on_result(command, error)`` is called from ``poll``/``flush`` once Kafka confirmed (error
    None) or gave up on a command. :meth:`flush` raises :class:`KafkaUnavailable` if any failed.
    """

    def __init__(
        self,
        producer: ProducerLike,
        topic: str,
        *,
        source: str,
        encoding: Literal["protobuf", "json"],
        on_result: DeliveryCallback | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._source = source
        self._encoding = encoding
        self._on_result = on_result
        self._outstanding = 0
        #: Commands Kafka did not take, and the last reason.
        self.failed = 0
        self.last_error = ""

    def send(self, command: pb.CommandMessage) -> None:
        """Queue ``command``; raises :class:`KafkaUnavailable` if the local queue refuses it."""
        key, value, headers = command_record(command, source=self._source, encoding=self._encoding)

        def delivered(err: Any, _msg: Any) -> None:
            self._outstanding -= 1
            error = None if err is None else _text(err)
            if error is not None:
                self.failed += 1
                self.last_error = f"command {command.command_id}: {error}"
            if self._on_result is not None:
                self._on_result(command, error)

        try:
            self._producer.produce(self._topic, value=value, key=key, headers=headers, on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            reason = _reason(exc) if isinstance(exc, KafkaException) else str(exc)
            raise KafkaUnavailable(f"cannot queue command {command.command_id}: {reason}") from None
        self._outstanding += 1

    def poll(self) -> None:
        """Serve delivery callbacks without waiting."""
        self._producer.poll(0)

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` s until Kafka confirmed everything sent."""
        remaining = self._producer.flush(timeout)
        if remaining or self._outstanding > 0:
            raise KafkaUnavailable(f"{max(remaining, self._outstanding)} command(s) not confirmed by Kafka")
        if self.failed:
            raise KafkaUnavailable(f"{self.failed} command(s) refused by Kafka, last: {self.last_error}")

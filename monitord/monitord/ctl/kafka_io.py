"""How monitorctl reads Kafka: partitions assigned at offsets of its own choosing.

Clients come from :class:`monitord.kafka_clients.KafkaClients`. Readers never join a consumer
group: they ``assign`` partitions at offsets they chose themselves, which is fast (no rebalance)
and exact -- ``send --wait`` positions its reader at the high watermarks *before* producing, so it
cannot miss a response that arrives quickly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from monitord.errors import KafkaUnavailable
from monitord.kafka_clients import ConsumerLike, MessageLike, MetadataSource, error_text, exception_text

log = logging.getLogger(__name__)

#: Records fetched per ``consume`` call.
BATCH = 500


# -- reading --------------------------------------------------------------------------------------


def partitions_of(client: MetadataSource, topic: str, timeout: float) -> list[int]:
    """The partition numbers of ``topic``; :class:`KafkaUnavailable` if Kafka or the topic is missing."""
    try:
        meta = client.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read metadata of topic {topic!r}: {exception_text(exc)}") from None
    described = meta.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        why = error_text(described.error) if described is not None and described.error is not None else "no such topic"
        raise KafkaUnavailable(f"topic {topic!r}: {why}")
    return sorted(described.partitions)


def watermarks(consumer: ConsumerLike, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` for every partition of ``topic``, as the broker has them now."""
    marks: dict[int, tuple[int, int]] = {}
    for partition in partitions_of(consumer, topic, timeout):
        try:
            got = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read offsets of {topic}[{partition}]: {exception_text(exc)}") from None
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


def assign_at_end(consumer: ConsumerLike, topics: Sequence[str], timeout: float) -> None:
    """Assign every partition of each of ``topics`` at its current end (high watermark read now)."""
    consumer.assign(
        [
            TopicPartition(topic, partition, high)
            for topic in topics
            for partition, (_low, high) in watermarks(consumer, topic, timeout).items()
        ]
    )


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

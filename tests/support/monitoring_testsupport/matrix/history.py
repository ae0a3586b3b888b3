"""The record of truth: what the topics hold, read with the harness's own consumer, to their end.

A cell notes each partition's end offset when it starts (:func:`marks`); reading from there to the
end offsets of the moment (:func:`read_history`) yields every record the cell caused, in partition
order, with the record's Kafka timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from google.protobuf.message import Message

from monitord import records
from monitoring_testsupport.paths import unique

TOPICS = ("monitoring-data", "command-responses", "agent-status")
Marks = dict[tuple[str, int], int]


@dataclass(frozen=True)
class Rec:
    """One record read back: where it sits, whose it is, what it says, and when Kafka stamped it."""

    topic: str
    partition: int
    offset: int
    agent_id: str
    message: Message
    timestamp_ms: int


class HistoryIncomplete(Exception):
    """The topics could not be read to their end offsets in time."""


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique("matrix"), "enable.auto.commit": False})


def _watermarks(consumer: Consumer, topics: Iterable[str]) -> dict[tuple[str, int], tuple[int, int]]:
    found: dict[tuple[str, int], tuple[int, int]] = {}
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10)
        for partition in meta.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            found[(topic, partition)] = (int(low), int(high))
    return found


def marks(bootstrap: str, topics: Iterable[str] = TOPICS) -> Marks:
    """Every partition's end offset now: where a cell's history starts."""
    consumer = _consumer(bootstrap)
    try:
        return {tp: high for tp, (_, high) in _watermarks(consumer, topics).items()}
    finally:
        consumer.close()


def read_history(
    bootstrap: str, agent_ids: Iterable[str], since: Marks, topics: Iterable[str] = TOPICS, timeout: float = 60.0
) -> dict[str, list[Rec]]:
    """Every record keyed by one of ``agent_ids`` from ``since`` to the current end, per topic,
    sorted by (partition, offset); raises :class:`HistoryIncomplete` after ``timeout``."""
    wanted = set(agent_ids)
    topics = tuple(topics)
    consumer = _consumer(bootstrap)
    out: dict[str, list[Rec]] = {t: [] for t in topics}
    try:
        ends: dict[tuple[str, int], int] = {}
        assignment = []
        for tp, (low, high) in _watermarks(consumer, topics).items():
            start = max(low, since.get(tp, 0))
            if high > start:
                ends[tp] = high
                assignment.append(TopicPartition(tp[0], tp[1], start))
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise HistoryIncomplete(f"not read to the end in {timeout}s: {sorted(ends)}")
            for msg in consumer.consume(1000, timeout=0.5):
                rec = _decode(msg, wanted)
                if rec is not None:
                    out[rec.topic].append(rec)
            positions = consumer.position([TopicPartition(t, p) for t, p in ends])
            for pos in positions:
                if pos.offset >= ends[(pos.topic, pos.partition)]:
                    del ends[(pos.topic, pos.partition)]
    finally:
        consumer.close()
    for recs in out.values():
        recs.sort(key=lambda r: (r.partition, r.offset))
    return out


def _decode(msg: Any, wanted: set[str]) -> Rec | None:
    if msg.error():
        return None
    key: bytes | None = msg.key()
    if key is None or key.decode(errors="replace") not in wanted:
        return None
    try:
        decoded = records.decode(key, msg.value(), msg.headers())
    except records.RecordDecodeError:
        return None
    return Rec(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        agent_id=decoded.agent_id,
        message=decoded.message,
        timestamp_ms=int(msg.timestamp()[1]),
    )

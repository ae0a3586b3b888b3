"""Fakes of librdkafka's producer and consumer for monitord's unit tests.

They keep librdkafka's threading rules: :class:`FakeProducer` queues delivery reports in
``produce()`` and runs the callbacks only inside ``poll()``/``flush()`` -- on the bridge's poll
thread, never on the event loop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, KafkaError
from google.protobuf.message import Message

from monitord import records


@dataclass(frozen=True)
class Produced:
    """One record handed to the fake producer."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def decoded(self) -> Message:
        return records.decode(self.key, self.value, self.headers).message


class FakeProducer:
    """An in-memory librdkafka producer.

    ``produce()`` only queues the record and its delivery callback. With ``auto`` every queued
    record is confirmed at the next ``poll()``; otherwise a test decides with :meth:`release`
    (confirm or fail the oldest records). Callbacks run inside ``poll()``/``flush()`` only.
    """

    def __init__(self, conf: dict[str, Any], *, auto: bool = True) -> None:
        self.conf = conf
        self.auto = auto
        self.produced: list[Produced] = []
        #: How many of the next produce() calls raise BufferError (librdkafka's queue is full).
        self.full = 0
        #: Threads the delivery callbacks ran on.
        self.callback_threads: set[str] = set()
        self.polls = 0
        self._lock = threading.Lock()
        self._queued: deque[Any] = deque()
        self._released: deque[tuple[Any, KafkaError | None]] = deque()

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        with self._lock:
            if self.full:
                self.full -= 1
                raise BufferError("Local: Queue full")
            self.produced.append(Produced(topic, key, value, list(headers)))
            self._queued.append(on_delivery)

    def release(self, count: int = 1, error: KafkaError | None = None) -> None:
        """Let the oldest ``count`` queued records be reported (ok, or failed with ``error``)."""
        with self._lock:
            for _ in range(count):
                self._released.append((self._queued.popleft(), error))

    @property
    def waiting(self) -> int:
        """Records produced and not yet released for a delivery report."""
        with self._lock:
            return len(self._queued)

    def poll(self, timeout: float) -> int:
        with self._lock:
            self.polls += 1
            if self.auto:
                while self._queued:
                    self._released.append((self._queued.popleft(), None))
            batch = list(self._released)
            self._released.clear()
        for callback, error in batch:
            self.callback_threads.add(threading.current_thread().name)
            callback(error, None)
        if not batch:
            time.sleep(min(timeout, 0.002))
        return len(batch)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return len(self)

    def list_topics(self, topic: str, timeout: float) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        with self._lock:
            return len(self._queued) + len(self._released)

    def on(self, topic: str) -> list[Message]:
        """The decoded records produced to ``topic``, in order."""
        return [p.decoded() for p in list(self.produced) if p.topic == topic]


class ProducerFactory:
    """``producer_factory=`` for the bridge; remembers the producer it made."""

    def __init__(self, *, auto: bool = True, fail: Exception | None = None) -> None:
        self.auto = auto
        self.fail = fail
        self.made: list[FakeProducer] = []

    def __call__(self, conf: dict[str, Any]) -> FakeProducer:
        if self.fail is not None:
            raise self.fail
        self.made.append(FakeProducer(conf, auto=self.auto))
        return self.made[-1]

    @property
    def producer(self) -> FakeProducer:
        return self.made[0]


@dataclass
class FakeMessage:
    """A consumed record, as confluent-kafka hands it over."""

    _topic: str
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]] | None = None
    _error: Any = None
    _partition: int = 0
    _offset: int = 0
    _timestamp: float | None = None

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> Any:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        if self._timestamp is None:
            return TIMESTAMP_NOT_AVAILABLE, -1
        return TIMESTAMP_CREATE_TIME, int(self._timestamp * 1000)


def message(
    topic: str, proto: Message, agent_id: str, encoding: str = "protobuf", *, offset: int = 0, partition: int = 0
) -> FakeMessage:
    key, value, headers = records.encode(proto, agent_id=agent_id, server_id="test", encoding=encoding)  # type: ignore[arg-type]
    return FakeMessage(topic, key, value, headers, _offset=offset, _partition=partition)


@dataclass
class TopicPartitionStub:
    topic: str
    partition: int
    offset: int = -1001


@dataclass
class _TopicMetadata:
    partitions: dict[int, None]
    error: Any = None


@dataclass
class _Metadata:
    topics: dict[str, _TopicMetadata]


class FakeConsumer:
    """A consumer fed by the test (:meth:`feed`); thread-safe like librdkafka's.

    As monitord's commands reader it assigns partitions itself: every topic has ``partitions``
    partitions whose end offset is ``ends[(topic, partition)]`` (0 unless set: nothing to replay).
    As the duty consumer it subscribes: the first poll assigns every partition (``on_assign``).
    """

    def __init__(self, conf: dict[str, Any], *, partitions: int = 1) -> None:
        self.conf = conf
        self.topics: list[str] = []
        self.assigned: list[Any] = []
        self.paused: list[Any] = []
        self.ends: dict[tuple[str, int], int] = {}
        self.closed = threading.Event()
        #: Partitions of every topic (a test may add some while the consumer runs).
        self.partitions = partitions
        self._on_assign: Any = None
        self._lock = threading.Lock()
        self._pending: deque[FakeMessage] = deque()

    def feed(self, *messages: FakeMessage) -> None:
        with self._lock:
            self._pending.extend(messages)

    def list_topics(self, topic: str, timeout: float) -> Any:
        return _Metadata({topic: _TopicMetadata(dict.fromkeys(range(self.partitions)))})

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None) -> None:
        self.topics = list(topics)
        self._on_assign = on_assign

    def poll(self, timeout: float) -> FakeMessage | None:
        if self._on_assign is not None:  # the first poll joins the group
            on_assign, self._on_assign = self._on_assign, None
            on_assign(self, [TopicPartitionStub(t, p) for t in self.topics for p in range(self.partitions)])
        with self._lock:
            if self._pending:
                return self._pending.popleft()
        time.sleep(min(timeout, 0.002))
        return None

    def consume(self, num_messages: int, timeout: float) -> Sequence[FakeMessage]:
        with self._lock:
            batch = [self._pending.popleft() for _ in range(min(num_messages, len(self._pending)))]
        return batch

    def offsets_for_times(self, partitions: list[Any], timeout: float) -> list[Any]:
        return [TopicPartitionStub(tp.topic, tp.partition, 0) for tp in partitions]

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        return 0, self.ends.get((partition.topic, partition.partition), 0)

    def position(self, partitions: list[Any]) -> list[Any]:
        return [TopicPartitionStub(tp.topic, tp.partition, -1001) for tp in partitions]

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = list(partitions)

    def incremental_assign(self, partitions: list[Any]) -> None:
        self.assigned += list(partitions)

    def pause(self, partitions: list[Any]) -> None:
        self.paused = list(partitions)

    def unassign(self) -> None:
        self.assigned = []

    def close(self) -> None:
        self.closed.set()


class ConsumerFactory:
    """Makes :class:`FakeConsumer` s; ``ends`` and ``partitions`` apply to each reader it makes."""

    def __init__(self, *, partitions: int = 1, ends: dict[tuple[str, int], int] | None = None) -> None:
        self.made: list[FakeConsumer] = []
        self._partitions = partitions
        self._ends = ends or {}
        self._lock = threading.Lock()
        self.made_reader = threading.Event()

    def __call__(self, conf: dict[str, Any]) -> FakeConsumer:
        consumer = FakeConsumer(conf, partitions=self._partitions)
        consumer.ends = dict(self._ends)
        with self._lock:
            self.made.append(consumer)
        if "group.instance.id" not in conf:
            self.made_reader.set()
        return consumer

    def reader(self) -> FakeConsumer:
        """The commands reader (the consumer that is not a group member)."""
        return next(c for c in self.made if "group.instance.id" not in c.conf)

    def duty(self) -> FakeConsumer:
        """The duty consumer (the static group member)."""
        return next(c for c in self.made if "group.instance.id" in c.conf)

"""Fakes of monitord's unit tests: a librdkafka producer and consumer, a publisher, a call context.

They keep librdkafka's threading rules: :class:`FakeProducer` queues delivery reports in
``produce()`` and runs the callbacks only inside ``poll()``/``flush()`` -- on the bridge's poll
thread, never on the event loop. Tests wait with :func:`until`, never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError
from google.protobuf.message import Message

from monitord import records
from monitord.config import KafkaSection, MonitordConfig
from monitoring.v1 import monitoring_pb2 as pb

#: Upper bound of every wait in these tests.
WAIT = 5.0


async def until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """Wait (bounded) until ``condition()`` holds; fails the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def wait_until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """:func:`until` for a thread that is not the event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


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


def message(topic: str, proto: Message, agent_id: str, encoding: str = "protobuf") -> FakeMessage:
    key, value, headers = records.encode(proto, agent_id=agent_id, server_id="test", encoding=encoding)  # type: ignore[arg-type]
    return FakeMessage(topic, key, value, headers)


@dataclass
class TopicPartitionStub:
    topic: str
    partition: int
    offset: int = -1001


class FakeConsumer:
    """A subscribing consumer fed by the test (:meth:`feed`); thread-safe like librdkafka's."""

    def __init__(self, conf: dict[str, Any], *, partitions: int = 1) -> None:
        self.conf = conf
        self.topics: list[str] = []
        self.assigned: list[Any] = []
        self.closed = threading.Event()
        self._partitions = partitions
        self._on_assign: Any = None
        self._lock = threading.Lock()
        self._pending: deque[FakeMessage] = deque()

    def feed(self, *messages: FakeMessage) -> None:
        with self._lock:
            self._pending.extend(messages)

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        self.topics = list(topics)
        self._on_assign = on_assign

    def poll(self, timeout: float) -> FakeMessage | None:
        if self._on_assign is not None:  # the first poll joins the group
            on_assign, self._on_assign = self._on_assign, None
            on_assign(self, [TopicPartitionStub(t, p) for t in self.topics for p in range(self._partitions)])
        with self._lock:
            if self._pending:
                return self._pending.popleft()
        time.sleep(min(timeout, 0.002))
        return None

    def consume(self, num_messages: int, timeout: float) -> Sequence[FakeMessage]:
        with self._lock:
            batch = [self._pending.popleft() for _ in range(min(num_messages, len(self._pending)))]
        return batch

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        return [TopicPartitionStub(tp.topic, tp.partition) for tp in partitions]

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        return 0, 7

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = list(partitions)

    def close(self) -> None:
        self.closed.set()


class ConsumerFactory:
    def __init__(self) -> None:
        self.made: list[FakeConsumer] = []

    def __call__(self, conf: dict[str, Any]) -> FakeConsumer:
        self.made.append(FakeConsumer(conf))
        return self.made[-1]


@dataclass
class RecordingPublisher:
    """A :class:`monitord.publishers.BackgroundProducer` that keeps what it was given."""

    published: list[tuple[str, Message, str]] = field(default_factory=list)

    def publish_soon(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]], what: str) -> None:
        self.published.append((topic, records.decode(key, value, headers).message, what))

    def on(self, topic: str) -> list[Message]:
        return [m for t, m, _ in self.published if t == topic]

    def presence(self) -> list[pb.AgentStatus]:
        return [m for m in self.on(KafkaSection().topics.agent_status) if isinstance(m, pb.AgentStatus)]


class Aborted(Exception):
    """What :meth:`FakeContext.abort` raises (grpc.aio raises its own AbortError)."""

    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """The part of ``grpc.aio.ServicerContext`` monitord reads."""

    def __init__(
        self,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        auth: dict[str, list[bytes]] | None = None,
        peer: str = "ipv4:127.0.0.1:5555",
    ) -> None:
        self._metadata = tuple(metadata)
        self._auth = auth or {}
        self._peer = peer
        self.written: list[pb.ServerMessage] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: Any, details: str) -> None:
        raise Aborted(code, details)

    async def write(self, message: pb.ServerMessage) -> None:
        self.written.append(message)


def plaintext_config(**server: Any) -> MonitordConfig:
    """A config for in-process servers: 127.0.0.1, a free port, plaintext, anonymous agents."""
    import dataclasses

    from monitord.config import AuthSection, ServerMetricsSection, ServerSection, TlsSection
    from monitoring_testsupport import free_port

    section = ServerSection(
        listen=f"127.0.0.1:{free_port()}",
        server_id="test-1",
        tls=TlsSection(mode="plaintext"),
        auth=AuthSection(require_identity=False),
        shutdown_grace_seconds=2.0,
        log_each_record=True,
    )
    return MonitordConfig(server=dataclasses.replace(section, **server), metrics=ServerMetricsSection(listen=""))


class AgentCall:
    """An agent's StreamCommunication call against an in-process server."""

    def __init__(self, channel: Any, agent_id: str, metadata: Sequence[tuple[str, str]] | None = None) -> None:
        from monitoring.v1 import monitoring_pb2_grpc as pb_grpc

        self._outbox: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        stub = pb_grpc.MonitoringServiceStub(channel)
        md = (("agent-id", agent_id),) if metadata is None else tuple(metadata)
        self.call = stub.StreamCommunication(self._requests(), metadata=md)

    async def _requests(self) -> Any:
        while (message := await self._outbox.get()) is not None:
            yield message

    def send(self, *messages: pb.AgentMessage) -> None:
        for message in messages:
            self._outbox.put_nowait(message)

    def close(self) -> None:
        """Half-close: the agent sends nothing more."""
        self._outbox.put_nowait(None)

    async def read(self) -> pb.ServerMessage:
        message = await asyncio.wait_for(self.call.read(), WAIT)
        assert isinstance(message, pb.ServerMessage), f"stream ended: {message!r}"
        return message

    async def goodbye(self) -> None:
        """A graceful close: STOPPING heartbeat, half-close, the call ends OK."""
        import grpc

        self.send(pb.AgentMessage(heartbeat=pb.AgentHeartbeat(state=pb.AGENT_STATE_STOPPING)))
        self.close()
        assert await asyncio.wait_for(self.call.code(), WAIT) == grpc.StatusCode.OK


def metrics_message(sequence: int, agent_id: str = "web-1") -> pb.AgentMessage:
    return pb.AgentMessage(metrics_data=pb.MetricsData(agent_id=agent_id, sequence=sequence))

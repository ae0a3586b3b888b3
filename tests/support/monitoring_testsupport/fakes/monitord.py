"""Fakes of monitord's unit tests: a publisher, a servicer context, an agent's call, configs.

The Kafka fakes (:mod:`monitoring_testsupport.fakes.kafka`) and the bounded waits
(:mod:`monitoring_testsupport.fakes.waiting`) are re-exported here, so a test imports from one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from monitord import records
from monitord.config import KafkaSection, MonitordConfig
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.kafka import (
    ConsumerFactory,
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    Produced,
    ProducerFactory,
    TopicPartitionStub,
    message,
)
from monitoring_testsupport.fakes.waiting import WAIT, until

__all__ = [
    "WAIT",
    "Aborted",
    "AgentCall",
    "ConsumerFactory",
    "FakeConsumer",
    "FakeContext",
    "FakeMessage",
    "FakeProducer",
    "Produced",
    "ProducerFactory",
    "RecordingPublisher",
    "TopicPartitionStub",
    "message",
    "metrics_message",
    "plaintext_config",
    "until",
]


@dataclass
class RecordingPublisher:
    """A :class:`monitord.publishers.BackgroundProducer` that keeps what it was given."""

    published: list[tuple[str, Message, str]] = field(default_factory=list)
    #: ``on_failure`` callbacks of what was published (a test calls one to say Kafka refused it).
    failures: list[Callable[[], None] | None] = field(default_factory=list)

    def publish_soon(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        what: str,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.published.append((topic, records.decode(key, value, headers).message, what))
        self.failures.append(on_failure)

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
        for item in messages:
            self._outbox.put_nowait(item)

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

"""An in-process monitord for the agent's unit tests: a real ``grpc.aio`` server on 127.0.0.1.

It records registrations and every message an agent sends, acknowledges metrics and command
responses (unless told otherwise) and sends what a test queues. Tests wait on its conditions with
:meth:`FakeMonitord.until`, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import grpc

from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc

WAIT_SECONDS = 10.0


class FakeMonitord(pb_grpc.MonitoringServiceServicer):  # type: ignore[misc]
    """``async with FakeMonitord() as server:`` serves on ``server.address`` until the block ends."""

    def __init__(self, *, accept: bool = True, auto_ack: bool = True, server_id: str = "fake-1") -> None:
        self.accept = accept
        #: Acknowledge every metrics record and command response as it arrives.
        self.auto_ack = auto_ack
        self.server_id = server_id
        self.registrations: list[pb.AgentRegistration] = []
        self.metadata: list[dict[str, str]] = []
        self.received: list[pb.AgentMessage] = []
        self.streams = 0
        self.streams_ended = 0
        self._out: asyncio.Queue[pb.ServerMessage | None] | None = None
        self._changed = asyncio.Event()
        self._server: Any = None
        self.address = ""

    # -- what a test reads -----------------------------------------------------------------------

    def metrics(self) -> list[int]:
        """Sequence numbers of the metrics records received, in order (with repeats)."""
        return [m.metrics_data.sequence for m in self.received if m.HasField("metrics_data")]

    def heartbeats(self) -> list[pb.AgentHeartbeat]:
        return [m.heartbeat for m in self.received if m.HasField("heartbeat")]

    def responses(self) -> list[pb.CommandResponseMessage]:
        return [m.command_response for m in self.received if m.HasField("command_response")]

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
        """Wait (bounded) until ``condition()`` holds; re-checked whenever the server saw something."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    # -- what a test does ------------------------------------------------------------------------

    def send(self, message: pb.ServerMessage) -> None:
        """Send ``message`` on the open stream."""
        assert self._out is not None, "no stream open"
        self._out.put_nowait(message)

    def ack_metrics(self, first: int, last: int, *, success: bool = True, retriable: bool = False) -> None:
        self.send(
            pb.ServerMessage(
                acknowledgment=pb.Ack(
                    kind=pb.ACK_KIND_METRICS,
                    success=success,
                    retriable=retriable,
                    first_sequence=first,
                    last_sequence=last,
                    message="" if success else "kafka down",
                )
            )
        )

    def end_stream(self) -> None:
        """Close the open stream from the server's side."""
        if self._out is not None:
            self._out.put_nowait(None)

    # -- the service -----------------------------------------------------------------------------

    async def RegisterAgent(self, request: pb.AgentRegistration, context: Any) -> pb.Ack:  # noqa: N802
        self.registrations.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        self._changed.set()
        if not self.accept:
            return pb.Ack(kind=pb.ACK_KIND_REGISTRATION, success=False, message="not welcome")
        return pb.Ack(kind=pb.ACK_KIND_REGISTRATION, success=True, message="welcome", server_id=self.server_id)

    async def StreamCommunication(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: Any
    ) -> AsyncIterator[pb.ServerMessage]:
        out: asyncio.Queue[pb.ServerMessage | None] = asyncio.Queue()
        self._out = out
        self.streams += 1
        self._changed.set()

        async def read() -> None:
            async for message in request_iterator:
                self.received.append(message)
                if self.auto_ack:
                    self._auto_ack(message, out)
                self._changed.set()
            out.put_nowait(None)  # the agent half-closed: end the stream too

        reader = asyncio.create_task(read())
        try:
            while (message := await out.get()) is not None:
                yield message
        finally:
            reader.cancel()
            self.streams_ended += 1
            self._changed.set()

    @staticmethod
    def _auto_ack(message: pb.AgentMessage, out: asyncio.Queue[pb.ServerMessage | None]) -> None:
        if message.HasField("metrics_data"):
            seq = message.metrics_data.sequence
            ack = pb.Ack(kind=pb.ACK_KIND_METRICS, success=True, first_sequence=seq, last_sequence=seq)
            out.put_nowait(pb.ServerMessage(acknowledgment=ack))
        elif message.HasField("command_response"):
            r = message.command_response
            ack = pb.Ack(
                kind=pb.ACK_KIND_COMMAND_RESPONSE, success=True, command_id=r.command_id, command_status=r.status
            )
            out.put_nowait(pb.ServerMessage(acknowledgment=ack))

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeMonitord:
        self._server = grpc.aio.server()
        pb_grpc.add_MonitoringServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end_stream()
        await self._server.stop(grace=None)


def unused_address() -> str:
    """An address nothing listens on (a port just bound and released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"

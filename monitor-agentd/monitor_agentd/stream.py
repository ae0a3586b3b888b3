"""One connection to one monitord: register, open the stream, write and read until it ends.

The writer sends what the outbound queue hands out (replaying everything unacknowledged first);
the reader tells the queue about acks and passes commands to the command sink. Both run in a
TaskGroup: if either fails the connection is over and :class:`LinkFailed` tells the reconnect loop
(:mod:`monitor_agentd.connection`) why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

import grpc

from monitor_agentd import credentials
from monitor_agentd.config import ConnectionSection
from monitor_agentd.errors import CredentialsError, LinkFailed
from monitor_agentd.outbound import Outbound
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_common.transport import COMPRESSION, client_keepalive_options
from monitoring_common.untrusted import LogBudget, shown

log = logging.getLogger(__name__)


def channel_options(cfg: ConnectionSection) -> list[tuple[str, int]]:
    """The agent's channel options: HTTP/2 keepalive agreed with monitord, no channel retries, and
    the largest message it accepts from the server (``connection.max_receive_message_bytes``)."""
    return [
        *client_keepalive_options(cfg.keepalive_seconds, cfg.keepalive_timeout_seconds),
        ("grpc.max_receive_message_length", cfg.max_receive_message_bytes),
    ]


def stream_metadata(agent_id: str, connection: int) -> tuple[tuple[str, str], ...]:
    """The stream's call metadata: the agent id and the connection number it registered (0: none)."""
    return (("agent-id", agent_id), ("agent-connection", str(connection)))


class CommandSink(Protocol):
    """What to do with a command from the server (the command runner)."""

    def submit(self, command: pb.CommandMessage) -> None:
        """Take ``command`` over; must neither block nor raise."""
        ...


class PresenceSource(Protocol):
    """What the agent says about itself: at registration and in its goodbye heartbeat."""

    def registration(self) -> pb.AgentRegistration:
        """The RegisterAgent request for a new connection."""
        ...

    def heartbeat(self, state: pb.AgentState.ValueType) -> pb.AgentHeartbeat:
        """A heartbeat reporting ``state``."""
        ...


class Link:
    """Serve one connection; ``run()`` returns normally only after a graceful close."""

    def __init__(
        self,
        cfg: ConnectionSection,
        agent_id: str,
        outbound: Outbound,
        commands: CommandSink,
        presence: PresenceSource,
        *,
        connected: asyncio.Event | None = None,
    ) -> None:
        self._cfg = cfg
        self._agent_id = agent_id
        self._outbound = outbound
        self._commands = commands
        self._presence = presence
        self._retry_handle: asyncio.TimerHandle | None = None
        self.connected_since: float | None = None
        #: Set while a stream is open (pass ``connected`` to share it with parts built before the link).
        self.connected = connected if connected is not None else asyncio.Event()
        #: Wall-clock times of connection attempts (the reconnect-storm benchmark reads them).
        self.attempts: deque[float] = deque(maxlen=1000)
        self._redirect: str | None = None
        self._outstanding = 0
        #: How long the last stream stayed up (the reconnect loop resets its backoff on this).
        self.last_stream_seconds = 0.0
        self.server_id = ""
        #: Commands dropped unanswered because too many responses waited for the server's ack.
        self.unanswered = 0
        self._unanswered_log = LogBudget(lines=1, seconds=60.0)

    def reconfigure(self, cfg: ConnectionSection) -> None:
        """Reload: retry delays apply at once, channel options from the next connection."""
        self._cfg = cfg

    async def run(self, address: str) -> None:
        """Connect to ``address`` and serve until a graceful close; raises :class:`LinkFailed`."""
        self.last_stream_seconds = 0.0
        self._redirect = None
        self._outstanding = 0  # metrics written on the current stream and not yet (n)acked
        self.attempts.append(time.time())
        try:
            creds = credentials.load(self._cfg.tls)
        except CredentialsError as exc:
            raise LinkFailed(str(exc)) from None
        options = [*channel_options(self._cfg), *creds.options]
        try:
            compression = COMPRESSION[self._cfg.compression]
            if creds.channel is None:
                channel = grpc.aio.insecure_channel(address, options=options, compression=compression)
            else:
                channel = grpc.aio.secure_channel(address, creds.channel, options=options, compression=compression)
            async with channel:
                stub = pb_grpc.MonitoringServiceStub(channel)
                registration = self._presence.registration()
                ack = await stub.RegisterAgent(
                    registration,
                    timeout=self._cfg.connect_timeout_seconds,
                    wait_for_ready=True,
                    metadata=creds.metadata,
                )
                if not ack.success:
                    raise LinkFailed(f"registration refused: {shown(ack.message, 200)}")
                self.server_id = shown(ack.server_id)
                log.info("✓ Agent registered: %s", shown(ack.message, 200))
                log.info(
                    "Using bidirectional streaming (server %s at %s, connection %d)",
                    self.server_id or "?",
                    address,
                    registration.connection,
                )
                call = stub.StreamCommunication(
                    metadata=(*stream_metadata(self._agent_id, registration.connection), *creds.metadata)
                )
                self._outbound.start_stream()
                self.connected_since = time.monotonic()
                self.connected.set()
                await self._serve(call)
        except grpc.aio.AioRpcError as exc:
            raise LinkFailed(f"{exc.code().name}: {shown(exc.details(), 200)}") from None
        finally:
            if self.connected_since is not None:
                self.last_stream_seconds = time.monotonic() - self.connected_since
            self.connected_since = None
            self.connected.clear()
            if self._retry_handle is not None:
                self._retry_handle.cancel()
                self._retry_handle = None

    async def _serve(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._write_loop(call))
                tg.create_task(self._read_loop(call))
        except ExceptionGroup as group:
            first = group.exceptions[0]
            if isinstance(first, grpc.aio.AioRpcError):
                raise LinkFailed(f"{first.code().name}: {shown(first.details(), 200)}") from None
            if isinstance(first, LinkFailed):
                raise first from None
            if isinstance(first, asyncio.InvalidStateError):
                # A write or half-close raced with the RPC ending (server gone, transport error):
                # the connection is over, like any other failure; reconnect.
                raise LinkFailed(f"stream ended: {first}") from None
            raise

    async def _write_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        outbound = self._outbound
        while True:
            while (message := outbound.next_message()) is not None:
                await call.write(message)
                if message.HasField("metrics_data"):
                    self._outstanding += 1
            if outbound.ending_stream:
                # The server is going away: half-close now; whatever is unacknowledged stays in
                # the outbound queue and is replayed on the next stream.
                await call.done_writing()
                return
            if outbound.ready_for_goodbye:
                # The STOPPING heartbeat tells the server this is a goodbye, not a lost connection.
                await call.write(pb.AgentMessage(heartbeat=self._presence.heartbeat(pb.AGENT_STATE_STOPPING)))
                await call.done_writing()
                return
            await outbound.wait()

    async def _read_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        async for message in call:
            kind = message.WhichOneof("message")
            if kind == "acknowledgment":
                self._on_ack(message.acknowledgment)
            elif kind == "command":
                self._take_command(message.command)
            elif kind == "control" and message.control.action == pb.ServerControl.RECONNECT:
                reason = shown(message.control.reason, 200)
                log.info("Server %s asks to reconnect elsewhere: %s", self.server_id, reason)
                self._redirect = reason or "server asked to reconnect"
                self._outbound.end_stream()
        if self._redirect is not None:
            raise LinkFailed(f"server asked to reconnect ({self._redirect})", immediate=True)
        if not (self._outbound.finishing and not self._outbound.unacknowledged):
            raise LinkFailed("server closed the stream")

    def _take_command(self, command: pb.CommandMessage) -> None:
        if len(self._outbound.responses) < self._cfg.max_unacknowledged_responses:
            self._commands.submit(command)
            return
        # The server sends commands but does not acknowledge the answers: holding more would let it
        # grow the agent's memory without end. Unanswered, the command stays the server's to hold.
        self.unanswered += 1
        self._unanswered_log.log(
            log,
            logging.WARNING,
            "✗ Command %s dropped unanswered: %d responses wait for the server's ack (limit %d)",
            shown(command.command_id),
            len(self._outbound.responses),
            self._cfg.max_unacknowledged_responses,
        )

    def _on_ack(self, ack: pb.Ack) -> None:
        if ack.kind == pb.ACK_KIND_METRICS:
            self._outstanding = max(0, self._outstanding - (ack.last_sequence - ack.first_sequence + 1))
        if ack.kind == pb.ACK_KIND_COMMAND_RESPONSE:
            self._on_response_ack(ack)
            return
        if ack.kind != pb.ACK_KIND_METRICS:
            return
        if ack.success:
            self._outbound.ack_metrics(ack.first_sequence, ack.last_sequence)
            log.debug("Ack for metrics #%d..#%d", ack.first_sequence, ack.last_sequence)
        elif ack.retriable:
            log.warning(
                "Server could not store metrics #%d: %s; resending in %.1fs",
                ack.first_sequence,
                shown(ack.message, 200),
                self._cfg.retry_nacked_seconds,
            )
            self._outbound.hold()
            self._schedule_resend()
        else:
            log.error(
                "Server refused metrics #%d..#%d: %s", ack.first_sequence, ack.last_sequence, shown(ack.message, 200)
            )
            self._outbound.discard_metrics(ack.first_sequence, ack.last_sequence)

    def _on_response_ack(self, ack: pb.Ack) -> None:
        if ack.success:
            self._outbound.ack_response(ack.command_id, ack.command_status)
        elif ack.retriable:
            log.warning(
                "Server could not store the response to command %s: %s; resending in %.1fs",
                shown(ack.command_id),
                shown(ack.message, 200),
                self._cfg.retry_nacked_seconds,
            )
            self._schedule_resend()
        else:
            # Permanent: resending cannot help, and keeping it would hold the agent's shutdown forever.
            dropped = self._outbound.discard_responses(ack.command_id, ack.command_status)
            if dropped:
                log.error(
                    "✗ Server refused %s to command %s permanently: %s; dropped",
                    f"the {pb.CommandStatus.Name(ack.command_status)} response"
                    if ack.command_status
                    else f"{dropped} response{'' if dropped == 1 else 's'}",
                    shown(ack.command_id),
                    shown(ack.message, 200),
                )

    def _schedule_resend(self) -> None:
        if self._retry_handle is None:
            self._retry_handle = asyncio.get_running_loop().call_later(self._cfg.retry_nacked_seconds, self._resume)

    def _resume(self) -> None:
        self._retry_handle = None
        if self._outstanding > 0:
            # Earlier sends are still being tried by the server: resending now would only put a
            # second copy of each in Kafka. Replay once every outstanding record was answered.
            self._schedule_resend()
            return
        self._outbound.rewind()

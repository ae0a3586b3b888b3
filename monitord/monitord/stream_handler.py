"""One agent's StreamCommunication call: read, forward to Kafka, ack only what Kafka confirmed.

Reading and acknowledging run as two tasks joined by a FIFO of delivery futures. The reader hands
each record to the producer and moves on (no per-record flush); the acker awaits the futures in
arrival order and writes the ack only after the delivery report, so an agent never receives a
positive ack for a record Kafka does not have, and acks arrive in sequence order. In-flight records
are bounded per stream and in total: when either bound is reached, the reader stops reading and
gRPC flow control pushes back on the agent instead of monitord buffering without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

from monitord import records
from monitord.command_records import FINAL_STATUSES
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.errors import DeliveryError, MalformedMessage
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.limits import RateLimiter, metrics_problem, response_problem
from monitord.pending import Pending, described
from monitord.session import Session
from monitord.stats import ServerStats
from monitord.wire import decode
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import LogBudget, shown

log = logging.getLogger(__name__)


class AgentStream:
    """Serve one stream until the agent closes it, it breaks, or the server cancels it."""

    def __init__(
        self,
        cfg: MonitordConfig,
        session: Session,
        bridge: KafkaProducerBridge,
        stats: ServerStats,
        router: CommandRouter,
    ) -> None:
        self._router = router
        self._rate = RateLimiter(cfg.server.limits.messages_per_second)
        self._refused = LogBudget()  # refused input is logged, within a budget
        self._cfg = cfg
        self._session = session
        self._bridge = bridge
        self._budget = session.budget  # per stream, and through it the server's total
        self._stats = stats
        # FIFO of handed-over records (None: the agent half-closed); the acker may peek at the next.
        self._pending: deque[Pending | None] = deque()
        self._pending_ready = asyncio.Event()
        self._server_id = cfg.server.effective_server_id
        self._encoder = records.StreamEncoder(
            agent_id=session.agent_id, server_id=self._server_id, encoding=cfg.kafka.value_encoding
        )

    async def run(self, requests: AsyncIterator[bytes]) -> None:
        """Serve the stream until the agent half-closed and every ack was written (or either side failed)."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read_loop(requests), name=f"reader-{self._session.agent_id}")
                tg.create_task(self._ack_loop(), name=f"acker-{self._session.agent_id}")
        finally:
            self._release_unacked()

    async def _read_loop(self, requests: AsyncIterator[bytes]) -> None:
        session, rate = self._session, self._rate
        async for raw in requests:
            session.heard_from()
            if (delay := rate.take()) > 0:
                await asyncio.sleep(delay)
            try:
                message = decode(pb.AgentMessage, raw)
            except MalformedMessage as exc:  # read no further; the service answers INVALID_ARGUMENT
                session.refused = str(exc)
                break
            await self._handle(message)
        # The agent half-closed (or sent garbage): the acker finishes what is outstanding first.
        self._put(None)

    def _release_unacked(self) -> None:
        # Records still queued when the stream died give their slots back (the agent resends them).
        while self._pending:
            if self._pending.popleft() is not None:
                self._budget.release()

    async def _handle(self, message: pb.AgentMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "metrics_data":
            await self._handle_metrics(message.metrics_data)
        elif kind == "command_response":
            await self._handle_response(message.command_response)
        elif kind == "heartbeat":
            self._handle_heartbeat(message.heartbeat)
        else:
            self._refused.log(log, logging.WARNING, "Unknown message from agent '%s' ignored", self._session.agent_id)

    async def _handle_metrics(self, metrics: pb.MetricsData) -> None:
        agent_id = self._session.agent_id
        self._session.received_metrics()
        self._stats.received += 1
        if metrics.agent_id != agent_id:
            await self._reject(
                pb.ACK_KIND_METRICS, f"agent_id '{shown(metrics.agent_id)}' does not match stream", metrics.sequence
            )
            return
        value, headers = self._encoder.encode(metrics, metrics.sequence)
        problem = metrics_problem(metrics, self._cfg.server.limits, len(value))
        if problem is not None:
            await self._reject(pb.ACK_KIND_METRICS, f"record exceeds limits: {problem}", metrics.sequence)
            return
        await self._forward(pb.ACK_KIND_METRICS, self._cfg.kafka.topics.metrics, value, headers, metrics.sequence)

    async def _handle_response(self, response: pb.CommandResponseMessage) -> None:
        agent_id, kind = self._session.agent_id, pb.ACK_KIND_COMMAND_RESPONSE
        problem = response_problem(response, self._cfg.server.limits)
        if response.agent_id and response.agent_id != agent_id:
            problem = "agent_id does not match stream"
        elif problem is not None:
            problem = f"response exceeds limits: {problem}"
        else:
            response.agent_id, response.reported_by = agent_id, response.reported_by or "agent"
            if not self._router.responds_for_its_own(response):
                problem = "the command is another agent's"
        if problem is not None:  # the status lets the agent match the refusal to what it sent
            await self._reject(kind, problem, command_id=response.command_id, status=response.status)
            return
        # Which connection carried it: `monitorctl send --wait` matches presence records against it.
        response.connection = self._session.connection
        if await self._settled_before(response):
            return
        self._stats.note_response(pb.CommandStatus.Name(response.status))
        self._router.on_response(response)
        value, headers = self._encoder.encode(response)
        await self._forward(
            pb.ACK_KIND_COMMAND_RESPONSE,
            self._cfg.kafka.topics.command_responses,
            value,
            headers,
            command_id=response.command_id,
            command_status=response.status,
        )

    async def _settled_before(self, response: pb.CommandResponseMessage) -> bool:
        """A final response for a command Kafka already has one for is acknowledged, not written."""
        known = self._router.final_status(response.command_id)
        if known is None or response.status not in FINAL_STATUSES:
            return False
        if known != response.status:
            log.warning(
                "✗ Agent '%s' reports command %s %s, but it already ended %s: not written (one final status)",
                self._session.agent_id,
                response.command_id,
                pb.CommandStatus.Name(response.status),
                pb.CommandStatus.Name(known),
            )
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        await self._budget.acquire()
        self._put(Pending(pb.ACK_KIND_COMMAND_RESPONSE, future, 0, response.command_id, response.status, settled=True))
        return True

    def _handle_heartbeat(self, hb: pb.AgentHeartbeat) -> None:
        agent_id = self._session.agent_id
        self._stats.heartbeats += 1
        if hb.state == pb.AGENT_STATE_STOPPING:
            self._session.said_goodbye()
        self._session.heartbeat_every(hb.interval_seconds)
        if hb.spool_dropped > self._stats.agent_drops.get(agent_id, 0):
            log.warning("Agent '%s' reports %d metrics dropped from its full spool", agent_id, hb.spool_dropped)
            self._stats.note_agent_drops(agent_id, hb.spool_dropped)
        log.debug("Heartbeat from '%s' (last sequence %d, spool %d)", agent_id, hb.last_sequence, hb.spool_depth)

    async def _forward(
        self,
        kind: pb.AckKind.ValueType,
        topic: str,
        value: bytes,
        headers: records.Headers,
        sequence: int = 0,
        *,
        command_id: str = "",
        command_status: pb.CommandStatus.ValueType = pb.COMMAND_STATUS_UNSPECIFIED,
    ) -> None:
        # Bounded in-flight: block reading (not buffer) when Kafka is slower than the agents.
        await self._budget.acquire()
        key = self._encoder.key
        try:
            future = self._bridge.produce_nowait(topic, key, value, headers)
            if future is None:  # librdkafka's queue is full: wait for room
                future = await self._bridge.produce(topic, key, value, headers)
        except DeliveryError as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        self._put(Pending(kind, future, sequence, command_id, command_status))

    async def _reject(
        self,
        kind: pb.AckKind.ValueType,
        reason: str,
        sequence: int = 0,
        command_id: str = "",
        status: pb.CommandStatus.ValueType = pb.COMMAND_STATUS_UNSPECIFIED,
    ) -> None:
        self._refused.log(log, logging.WARNING, "Rejected message from agent '%s': %s", self._session.agent_id, reason)
        future = asyncio.get_running_loop().create_future()
        await self._budget.acquire()
        self._put(Pending(kind, future, sequence, command_id, status, reject=reason))

    def _put(self, item: Pending | None) -> None:
        self._pending.append(item)
        self._pending_ready.set()

    async def _next(self) -> Pending | None:
        while not self._pending:
            self._pending_ready.clear()
            await self._pending_ready.wait()
        return self._pending.popleft()

    def _coalesce(self, ack: pb.Ack) -> None:
        """Fold the following metrics records Kafka already confirmed, in sequence, into ``ack``.

        One Ack covering first..last replaces many: fewer HTTP/2 writes when the stream is busy,
        and it still only ever covers records whose delivery succeeded.
        """
        while self._pending:
            nxt = self._pending[0]
            if (
                nxt is None
                or nxt.kind != pb.ACK_KIND_METRICS
                or nxt.reject
                or not nxt.future.done()
                or nxt.future.exception() is not None
                or nxt.sequence != ack.last_sequence + 1
            ):
                return
            self._pending.popleft()
            self._budget.release()
            ack.last_sequence = nxt.sequence
            self._delivered(nxt)

    def _delivered(self, item: Pending) -> None:
        self._stats.forwarded += 1
        if self._cfg.server.log_each_record:
            log.info("✓ Forwarded %s from agent '%s' to Kafka", described(item), self._session.agent_id)

    async def _ack_loop(self) -> None:
        agent_id = self._session.agent_id
        while (item := await self._next()) is not None:
            try:
                ack = pb.Ack(
                    kind=item.kind,
                    server_id=self._server_id,
                    first_sequence=item.sequence,
                    last_sequence=item.sequence,
                    command_id=item.command_id,
                    command_status=item.command_status,
                )
                if item.reject:
                    ack.success, ack.retriable, ack.message = False, False, item.reject
                    self._stats.rejected += 1
                elif item.settled:
                    ack.success, ack.message = True, "already stored in Kafka"
                else:
                    try:
                        await item.future
                    except DeliveryError as exc:
                        ack.success, ack.retriable, ack.message = False, exc.retriable, exc.reason
                        self._stats.failed += 1
                        log.warning(
                            "✗ Kafka delivery failed for %s from agent '%s': %s (negative ack sent)",
                            described(item),
                            agent_id,
                            exc.reason,
                        )
                    else:
                        ack.success, ack.message = True, "stored in Kafka"
                        self._delivered(item)
                        if item.kind == pb.ACK_KIND_METRICS:
                            self._coalesce(ack)
            finally:
                self._budget.release()
            await self._session.send(pb.ServerMessage(acknowledgment=ack))
            self._stats.acks += 1

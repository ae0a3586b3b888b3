"""MonitoringService: the two RPCs of monitoring.proto."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import grpc

from monitord.auth import Authenticator
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.presence import PresencePublisher
from monitord.sessions import Registration, Session, SessionRegistry
from monitord.stats import ServerStats
from monitord.stream_handler import AgentStream
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: Agent ids are host-name-like: they become Kafka keys, log fields and file names.
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")


class MonitoringService(pb_grpc.MonitoringServiceServicer):
    """RegisterAgent and StreamCommunication on top of the session registry and the Kafka bridge."""

    def __init__(
        self,
        cfg: MonitordConfig,
        bridge: KafkaProducerBridge,
        sessions: SessionRegistry,
        stats: ServerStats,
        presence: PresencePublisher,
        router: CommandRouter,
        auth: Authenticator,
    ) -> None:
        self._auth = auth
        self._presence = presence
        self._router = router
        self._cfg = cfg
        self._bridge = bridge
        self._sessions = sessions
        self._stats = stats
        self._inflight_limit = cfg.server.max_inflight_total
        self._total_inflight = asyncio.Semaphore(self._inflight_limit)
        self._server_id = cfg.server.effective_server_id

    def inflight(self) -> int:
        """Records handed to Kafka and not yet acknowledged, over all streams."""
        return self._inflight_limit - self._total_inflight._value

    def reconfigure(self, cfg: MonitordConfig) -> None:
        """Reload: streams opened from now on use ``cfg`` (open ones keep theirs)."""
        self._cfg = cfg

    async def RegisterAgent(self, request: pb.AgentRegistration, context: grpc.aio.ServicerContext) -> pb.Ack:  # noqa: N802
        if self._sessions.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "monitord is shutting down; use another server")
        if not AGENT_ID.match(request.agent_id):
            log.warning("Registration with invalid agent id %r from %s refused", request.agent_id, context.peer())
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "agent_id must match " + AGENT_ID.pattern)
        await self._auth.check(context, request.agent_id)
        self._sessions.register(
            Registration(
                agent_id=request.agent_id,
                hostname=request.hostname,
                agent_version=request.agent_version,
                capabilities=frozenset(request.capabilities),
                instance_id=request.instance_id,
                interval_seconds=request.interval_seconds,
                peer=context.peer(),
                registered_at=time.time(),
            )
        )
        log.info("✓ Agent registered: %s on %s", request.agent_id, request.hostname or "?")
        return pb.Ack(
            kind=pb.ACK_KIND_REGISTRATION,
            success=True,
            message="Agent registered successfully",
            server_id=self._server_id,
        )

    # Writes go through context.write (acks and commands come from different tasks), so this
    # handler returns nothing instead of being an async generator.
    async def StreamCommunication(  # type: ignore[override]  # noqa: N802
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        agent_id = metadata.get("agent-id", "")
        if not AGENT_ID.match(agent_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "call metadata 'agent-id' missing or invalid")
        if self._sessions.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "monitord is shutting down; use another server")
        await self._auth.check(context, agent_id)
        limit = self._cfg.server.limits.max_agents
        if len(self._sessions) >= limit and not self._sessions.is_connected(agent_id):
            log.warning(
                "✗ Refused a stream for agent '%s' from %s: %d agents connected (limit)",
                agent_id,
                context.peer(),
                limit,
            )
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server holds its maximum of {limit} agents")
        task = asyncio.current_task()
        assert task is not None
        reason = "stream error"

        def cancel(why: str) -> None:
            nonlocal reason
            reason = why
            task.cancel()

        session = Session(agent_id=agent_id, peer=context.peer(), write=context.write, cancel=cancel)
        self._sessions.open(session)
        self._stats.streams_opened += 1
        log.info("Agent '%s' connected from %s (%d agents connected)", agent_id, session.peer, len(self._sessions))
        registration = self._sessions.registrations.get(agent_id)
        if registration is not None and registration.interval_seconds > 0:
            session.heartbeat_interval = registration.interval_seconds
        self._presence.publish(agent_id, pb.CONNECTED, peer=session.peer, registration=registration)
        ended_cleanly = False
        try:
            self._router.on_connect(session)
            stream = AgentStream(
                self._cfg, session, self._bridge, self._total_inflight, self._stats, self._router.on_response
            )
            await stream.run(request_iterator)
            # A dying peer can look like a half-close; only a STOPPING heartbeat makes it a goodbye.
            ended_cleanly = session.said_goodbye or session.redirected
            if not ended_cleanly:
                reason = "stream closed without a goodbye (agent died or connection lost)"
        except asyncio.CancelledError:
            reason = reason if reason != "stream error" else "connection lost"
            raise
        except Exception as exc:
            inner = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
            reason = f"stream error: {type(inner).__name__}: {inner}"
            if not isinstance(inner, (grpc.aio.AioRpcError, ConnectionError)):
                log.error("Unexpected error on the stream of agent '%s'", agent_id, exc_info=inner)
        finally:
            self._sessions.close(session)
            if ended_cleanly:
                state, why = pb.DISCONNECTED, "server shutting down" if session.redirected else "goodbye"
            else:
                state, why = (pb.STALE if reason.startswith("stale") else pb.DISCONNECTED), reason
            self._presence.publish(agent_id, state, reason=why, peer=session.peer, registration=registration)
            if ended_cleanly:
                log.info(
                    "✓ Stream ended for agent '%s' (%d metrics received)%s",
                    agent_id,
                    session.metrics_received,
                    "; redirected: server shutting down" if session.redirected else "",
                )
            else:
                log.warning(
                    "✗ Agent '%s' disconnected: %s (%d metrics received; %d agents connected)",
                    agent_id,
                    reason,
                    session.metrics_received,
                    len(self._sessions),
                )

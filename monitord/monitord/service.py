"""MonitoringService: the two RPCs of monitoring.proto.

A call is admitted here (agent id, draining, identity, the agent limit); the session's lifecycle
is the registry's (:mod:`monitord.sessions`), the stream itself the handler's
(:mod:`monitord.stream_handler`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc

from monitord.auth import Authenticator
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.sessions import Registration, SessionRegistry
from monitord.stats import ServerStats
from monitord.stream_handler import AgentStream
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_common.untrusted import ID_RULE, is_id, shown

log = logging.getLogger(__name__)


class MonitoringService(pb_grpc.MonitoringServiceServicer):
    """RegisterAgent and StreamCommunication on top of the session registry and the Kafka bridge."""

    def __init__(
        self,
        cfg: MonitordConfig,
        bridge: KafkaProducerBridge,
        sessions: SessionRegistry,
        stats: ServerStats,
        router: CommandRouter,
        auth: Authenticator,
    ) -> None:
        self._auth = auth
        self._router = router
        self._cfg = cfg
        self._bridge = bridge
        self._sessions = sessions
        self._stats = stats
        self._server_id = cfg.server.effective_server_id

    def reconfigure(self, cfg: MonitordConfig) -> None:
        """Reload: streams opened from now on use ``cfg`` (open ones keep theirs)."""
        self._cfg = cfg

    async def RegisterAgent(self, request: pb.AgentRegistration, context: grpc.aio.ServicerContext) -> pb.Ack:  # noqa: N802
        await self._refuse_while_draining(context)
        if not is_id(request.agent_id):
            log.warning(
                "Registration with invalid agent id '%s' from %s refused", shown(request.agent_id), context.peer()
            )
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "agent_id must be " + ID_RULE)
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
                connection=request.connection,
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
        cfg = self._cfg
        agent_id, connection = await self._admit_stream(context, cfg)
        async with self._sessions.opened(
            agent_id,
            context.peer(),
            context.write,
            max_inflight=cfg.server.max_inflight_per_stream,
            connection=connection,
        ) as session:
            self._router.on_connect(session)
            await AgentStream(cfg, session, self._bridge, self._stats, self._router).run(request_iterator)

    async def _admit_stream(self, context: grpc.aio.ServicerContext, cfg: MonitordConfig) -> tuple[str, int]:
        """The agent id the stream may act as and its connection number; aborts the call otherwise."""
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        agent_id = metadata.get("agent-id", "")
        connection = connection_number(metadata.get("agent-connection", ""))
        if not is_id(agent_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "call metadata 'agent-id' missing or invalid")
        await self._refuse_while_draining(context)
        await self._auth.check(context, agent_id)
        limit = cfg.server.limits.max_agents
        if len(self._sessions) >= limit and not self._sessions.is_connected(agent_id):
            log.warning(
                "✗ Refused a stream for agent '%s' from %s: %d agents connected (limit)",
                agent_id,
                context.peer(),
                limit,
            )
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server holds its maximum of {limit} agents")
        return agent_id, connection

    async def _refuse_while_draining(self, context: grpc.aio.ServicerContext) -> None:
        if self._sessions.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "monitord is shutting down; use another server")


def connection_number(text: str) -> int:
    """The ``agent-connection`` call metadata as a number; 0 (unknown) when absent or not a uint64."""
    if not text.isascii() or not text.isdigit():
        return 0
    value = int(text)
    return value if value < 2**64 else 0

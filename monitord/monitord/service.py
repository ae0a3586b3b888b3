"""MonitoringService: the two RPCs of monitoring.proto.

A call is admitted here (agent id, draining, identity, field bounds, the registration rate, the
agent limit); the session's lifecycle is the registry's (:mod:`monitord.sessions`), the stream
itself the handler's (:mod:`monitord.stream_handler`). Requests arrive as bytes and are decoded
here (:mod:`monitord.wire`): a malformed one is answered INVALID_ARGUMENT. Every refusal is
logged escaped and within a budget (:class:`~monitoring_common.untrusted.LogBudget`), so a
flood of bad calls costs a bounded number of log lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc

from monitord.auth import Authenticator
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.errors import MalformedMessage
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.limits import KeyedRate, registration_problem
from monitord.session import Registration
from monitord.sessions import SessionRegistry
from monitord.stats import ServerStats
from monitord.stream_handler import AgentStream
from monitord.wire import decode
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import ID_RULE, LogBudget, is_id, shown

log = logging.getLogger(__name__)

SERVICE_NAME = "monitoring.v1.MonitoringService"
#: Why a call is refused: its status, the answer, and the log line with its arguments.
Refusal = tuple[grpc.StatusCode, str, str, *tuple[object, ...]]
#: Registrations one agent id may make at once before its per-minute rate applies.
REGISTRATION_BURST = 10


def add_to_server(service: MonitoringService, server: grpc.aio.Server) -> None:
    """Attach ``service`` with bytes-in handlers (requests are decoded by :mod:`monitord.wire`)."""
    handlers = {
        "RegisterAgent": grpc.unary_unary_rpc_method_handler(
            service.RegisterAgent, request_deserializer=None, response_serializer=pb.Ack.SerializeToString
        ),
        "StreamCommunication": grpc.stream_stream_rpc_method_handler(
            service.StreamCommunication,
            request_deserializer=None,
            response_serializer=pb.ServerMessage.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class MonitoringService:
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
        limits = cfg.server.limits
        self._registrations = KeyedRate(limits.registrations_per_minute, REGISTRATION_BURST, 2 * limits.max_agents)
        # Refused calls are logged within budgets: one for callers not yet authenticated, one for agents.
        self._refused_anonymous, self._refused = LogBudget(), LogBudget()

    def reconfigure(self, cfg: MonitordConfig) -> None:
        """Reload: streams opened from now on use ``cfg`` (open ones keep theirs)."""
        self._cfg = cfg

    async def RegisterAgent(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.Ack:  # noqa: N802
        await self._refuse_while_draining(context)
        request, refusal = self._registration(raw, context.peer())
        # A refused call leaves its frames in reference cycles until the garbage collector runs
        # (rarely: app.py tunes it for throughput), so nothing large may stay referenced here.
        del raw
        if request is None:
            assert refusal is not None
            await self._refuse(context, self._refused_anonymous, *refusal)
        await self._auth.check(context, request.agent_id)
        limits = self._cfg.server.limits
        if not self._registrations.allow(request.agent_id):
            await self._refuse(
                context,
                self._refused,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"agent {request.agent_id} registers too often (limit {limits.registrations_per_minute:g} per minute)",
                "Registration of agent '%s' from %s refused: more than %g per minute",
                request.agent_id,
                context.peer(),
                limits.registrations_per_minute,
            )
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
        log.info("✓ Agent registered: %s on %s", request.agent_id, shown(request.hostname) or "?")
        return pb.Ack(
            kind=pb.ACK_KIND_REGISTRATION,
            success=True,
            message="Agent registered successfully",
            server_id=self._server_id,
        )

    # Writes go through context.write (acks and commands come from different tasks), so this
    # handler returns nothing instead of being an async generator.
    async def StreamCommunication(  # noqa: N802
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
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
        if session.refused:  # a malformed message: its disconnect line said so, the agent learns it here
            await self._refuse(context, None, grpc.StatusCode.INVALID_ARGUMENT, session.refused)

    def _registration(self, raw: bytes, peer: str) -> tuple[pb.AgentRegistration | None, Refusal | None]:
        """The registration in ``raw`` if its agent id and fields are valid, else why not.

        Checked before authentication, so an oversized request is dropped before anything else.
        """
        try:
            request = decode(pb.AgentRegistration, raw)
        except MalformedMessage as exc:
            why = str(exc)
            return None, (
                grpc.StatusCode.INVALID_ARGUMENT,
                why,
                "Refused a malformed registration from %s: %s",
                peer,
                why,
            )
        if not is_id(request.agent_id):
            line = "Registration with invalid agent id '%s' from %s refused"
            return None, (
                grpc.StatusCode.INVALID_ARGUMENT,
                "agent_id must be " + ID_RULE,
                line,
                shown(request.agent_id),
                peer,
            )
        if (problem := registration_problem(request, self._cfg.server.limits)) is not None:
            line = "Registration of agent '%s' from %s refused: %s"
            return None, (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"registration refused: {problem}",
                line,
                request.agent_id,
                peer,
                problem,
            )
        return request, None

    async def _refuse(
        self,
        context: grpc.aio.ServicerContext,
        budget: LogBudget | None,
        code: grpc.StatusCode,
        answer: str,
        line: str = "",
        *args: object,
    ) -> NoReturn:
        """End the call with ``code`` and ``answer``; say so in the log within ``budget``."""
        if budget is not None:
            budget.log(log, logging.WARNING, "✗ " + line, *args)
        await context.abort(code, answer)
        raise AssertionError("context.abort returned")  # it raises; NoReturn for the type checker

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
            await self._refuse(
                context,
                self._refused,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server holds its maximum of {limit} agents",
                "Refused a stream for agent '%s' from %s: %d agents connected (limit)",
                agent_id,
                context.peer(),
                limit,
            )
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

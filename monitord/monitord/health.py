"""gRPC health checking (grpc.health.v1) and server reflection, for load balancers and grpcurl.

Health: SERVING while Kafka is up or degraded; NOT_SERVING while it is down
(:mod:`monitord.kafka_state`: no confirmation for ``kafka.down_after_seconds``; agents are better
off on another instance) and from the start of shutdown on, so a balancer stops sending new
agents before the streams are redirected. Reflection lists the monitoring and health services.

Both follow ``server.auth``: when identities are required, reflection and health ``Watch`` (a
stream held open) need a valid credential -- any agent's token, or a verified client certificate
-- checked and throttled like an agent's (:meth:`monitord.auth.Authenticator.check_caller`).
Health ``Check`` stays open: it is one cheap unary answer, and load balancers and probes ask it
without credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from monitord.auth import Authenticator
from monitoring.v1 import monitoring_pb2 as pb

#: "" is the whole server (what most balancers ask about), then the agent service by name.
SERVICES = ("", pb.DESCRIPTOR.services_by_name["MonitoringService"].full_name)


class GuardedHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """The health servicer as the network sees it: ``Check`` open, ``Watch`` after a credential."""

    def __init__(self, inner: health.aio.HealthServicer, auth: Authenticator) -> None:
        self._inner, self._auth = inner, auth

    async def Check(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        return await self._inner.Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        await self._auth.check_caller(context)
        await self._inner.Watch(request, context)


class GuardedReflection(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """Server reflection after a credential (when identities are required)."""

    def __init__(self, service_names: tuple[str, ...], auth: Authenticator) -> None:
        super().__init__(service_names)
        self._auth = auth

    async def ServerReflectionInfo(  # noqa: N802
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        await self._auth.check_caller(context)
        async for response in super().ServerReflectionInfo(request_iterator, context):
            yield response


class HealthReporter:
    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._shutting_down = False

    def attach(self, server: grpc.aio.Server, auth: Authenticator | None = None) -> None:
        """Add health and reflection to ``server``, guarded by ``auth`` (None: open to all)."""
        names = (*SERVICES[1:], health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        if auth is None:
            health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
            reflection.enable_server_reflection(names, server)
            return
        health_pb2_grpc.add_HealthServicer_to_server(GuardedHealth(self.servicer, auth), server)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(GuardedReflection(names, auth), server)

    async def set_serving(self, serving: bool) -> None:
        """SERVING or NOT_SERVING for every service (ignored once shutting down)."""
        if self._shutting_down:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in SERVICES:
            await self.servicer.set(service, status)

    async def shutting_down(self) -> None:
        """NOT_SERVING for every service, for good (watchers are told at once)."""
        self._shutting_down = True
        await self.servicer.enter_graceful_shutdown()

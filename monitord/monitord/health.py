"""gRPC health checking (grpc.health.v1) and server reflection, for load balancers and grpcurl.

Health: SERVING while Kafka takes records; NOT_SERVING while deliveries fail (agents are better
off on another instance) and from the start of shutdown on, so a balancer stops sending new
agents before the streams are redirected. Reflection lists the monitoring and health services.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from monitoring.v1 import monitoring_pb2 as pb

#: "" is the whole server (what most balancers ask about), then the agent service by name.
SERVICES = ("", pb.DESCRIPTOR.services_by_name["MonitoringService"].full_name)


class HealthReporter:
    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._shutting_down = False

    def attach(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        names = (*SERVICES[1:], health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)

    async def set_serving(self, serving: bool) -> None:
        if self._shutting_down:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in SERVICES:
            await self.servicer.set(service, status)

    async def shutting_down(self) -> None:
        """NOT_SERVING for every service, for good (watchers are told at once)."""
        self._shutting_down = True
        await self.servicer.enter_graceful_shutdown()

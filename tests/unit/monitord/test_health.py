"""gRPC health: SERVING while Kafka takes records, NOT_SERVING while it does not and for good from
the start of shutdown."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from monitord.health import SERVICES, HealthReporter
from monitoring_testsupport.fakes.monitord import FakeContext

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_follows_kafka_until_shutdown() -> None:
    async def scenario() -> None:
        reporter = HealthReporter()

        async def statuses() -> list[int]:
            replies = [
                await reporter.servicer.Check(health_pb2.HealthCheckRequest(service=s), FakeContext()) for s in SERVICES
            ]
            return [int(r.status) for r in replies]

        await reporter.set_serving(True)
        assert await statuses() == [SERVING, SERVING]
        await reporter.set_serving(False)
        assert await statuses() == [NOT_SERVING, NOT_SERVING]
        await reporter.set_serving(True)
        await reporter.shutting_down()
        assert await statuses() == [NOT_SERVING, NOT_SERVING]
        await reporter.set_serving(True)  # Kafka coming back does not undo the shutdown
        assert await statuses() == [NOT_SERVING, NOT_SERVING]

    asyncio.run(scenario())

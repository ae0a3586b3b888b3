"""gRPC health: SERVING while Kafka takes records, NOT_SERVING while it does not and for good from
the start of shutdown; Watch and reflection need a credential when identities are required."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from monitord.auth import Authenticator, hash_token
from monitord.config import AuthSection, ServerSection
from monitord.health import SERVICES, GuardedHealth, GuardedReflection, HealthReporter
from monitoring_testsupport.fakes.monitord import Aborted, FakeContext

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


def test_watch_and_reflection_follow_the_configured_auth() -> None:
    auth = Authenticator(ServerSection(), {"web-1": hash_token("secret-1")})
    anonymous, agent = FakeContext(), FakeContext(metadata=[("authorization", "Bearer secret-1")])

    async def scenario() -> None:
        reporter = HealthReporter()
        await reporter.set_serving(True)
        guarded = GuardedHealth(reporter.servicer, auth)
        request = health_pb2.HealthCheckRequest(service="")
        assert (await guarded.Check(request, anonymous)).status == SERVING  # probes need no credential
        with pytest.raises(Aborted) as refused:
            await guarded.Watch(request, anonymous)
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        watch = asyncio.create_task(guarded.Watch(request, agent))
        while not agent.written:
            await asyncio.sleep(0.01)
        watch.cancel()
        assert [int(m.status) for m in agent.written] == [SERVING]  # type: ignore[attr-defined]

        reflection = GuardedReflection(("monitoring.v1.MonitoringService",), auth)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        with pytest.raises(Aborted):
            [r async for r in reflection.ServerReflectionInfo(ask(), anonymous)]
        (listed,) = [r async for r in reflection.ServerReflectionInfo(ask(), agent)]
        assert [s.name for s in listed.list_services_response.service] == ["monitoring.v1.MonitoringService"]
        # Anonymous agents allowed: so is everything else.
        open_auth = Authenticator(ServerSection(auth=AuthSection(require_identity=False)), {})
        assert [r async for r in GuardedReflection(("x",), open_auth).ServerReflectionInfo(ask(), anonymous)]

    asyncio.run(scenario())

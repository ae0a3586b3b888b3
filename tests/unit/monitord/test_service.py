"""The two RPCs through a real in-process grpc.aio server (127.0.0.1, any free port, fake Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from monitord.app import Monitord
from monitord.config import LimitsSection, MonitordConfig
from monitord.service import connection_number
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_testsupport.fakes.monitord import (
    WAIT,
    AgentCall,
    ConsumerFactory,
    ProducerFactory,
    message,
    metrics_message,
    plaintext_config,
    until,
)


@contextlib.asynccontextmanager
async def serving(
    cfg: MonitordConfig | None = None,
) -> AsyncIterator[tuple[Monitord, ProducerFactory, ConsumerFactory, grpc.aio.Channel]]:
    producers, consumers = ProducerFactory(), ConsumerFactory()
    server = Monitord(cfg or plaintext_config(), producer_factory=producers, consumer_factory=consumers)
    async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield server, producers, consumers, channel


def registration(agent_id: str = "web-1") -> pb.AgentRegistration:
    return pb.AgentRegistration(agent_id=agent_id, hostname="web-1.example", agent_version="2.0", interval_seconds=2)


def test_register_then_stream_metrics_acked_after_kafka() -> None:
    async def scenario() -> None:
        async with serving() as (server, producers, _, channel):
            stub = pb_grpc.MonitoringServiceStub(channel)
            ack = await stub.RegisterAgent(registration(), timeout=WAIT)
            assert (ack.kind, ack.success, ack.server_id) == (pb.ACK_KIND_REGISTRATION, True, "test-1")
            agent = AgentCall(channel, "web-1")
            agent.send(metrics_message(1), metrics_message(2))
            acks: list[pb.Ack] = []
            while not acks or acks[-1].last_sequence < 2:
                acks.append((await agent.read()).acknowledgment)
            assert all(a.success for a in acks) and acks[0].first_sequence == 1
            stored = producers.producer.on("monitoring-data")
            assert [m.sequence for m in stored] == [1, 2]  # type: ignore[attr-defined]
            await agent.goodbye()
            await until(lambda: len(server.sessions) == 0, what="the session closed")
            await server.bridge.drain(WAIT)
            presence = producers.producer.on("agent-status")
            assert [(s.state, s.reason, s.hostname) for s in presence] == [  # type: ignore[attr-defined]
                (pb.CONNECTED, "", "web-1.example"),
                (pb.DISCONNECTED, "goodbye", "web-1.example"),
            ]

    asyncio.run(scenario())


def test_the_connection_number_from_registration_and_metadata() -> None:
    async def scenario() -> None:
        async with serving() as (server, producers, _, channel):
            stub = pb_grpc.MonitoringServiceStub(channel)
            reg = registration()
            reg.connection = 41
            await stub.RegisterAgent(reg, timeout=WAIT)
            agent = AgentCall(channel, "web-1", metadata=(("agent-id", "web-1"), ("agent-connection", "42")))
            agent.send(
                pb.AgentMessage(command_response=pb.CommandResponseMessage(command_id="c1", status=pb.DELIVERED))
            )
            assert (await agent.read()).acknowledgment.command_id == "c1"
            await agent.goodbye()
            await until(lambda: len(server.sessions) == 0, what="the session closed")
            await server.bridge.drain(WAIT)
            presence = producers.producer.on("agent-status")
            assert [s.connection for s in presence] == [42, 42]  # type: ignore[attr-defined]
            [response] = producers.producer.on("command-responses")
            assert response.connection == 42  # type: ignore[attr-defined]  # the stream that carried it

    asyncio.run(scenario())


@pytest.mark.parametrize(("text", "number"), [("7", 7), ("", 0), ("x", 0), ("-1", 0), ("٣", 0), (str(2**64), 0)])
def test_connection_metadata_parsing(text: str, number: int) -> None:
    assert connection_number(text) == number


def test_a_command_from_kafka_reaches_the_connected_agent() -> None:
    async def scenario() -> None:
        async with serving() as (server, _, consumers, channel):
            assert await server.intake.wait_ready(WAIT)
            agent = AgentCall(channel, "web-1")
            agent.send(pb.AgentMessage(heartbeat=pb.AgentHeartbeat()))
            await until(lambda: server.sessions.is_connected("web-1"), what="the stream")
            command = pb.CommandMessage(command_id="c1", agent_id="web-1", command="ping")
            consumers.reader().feed(message("commands", command, "web-1"))
            received = await agent.read()
            assert received.command.command_id == "c1" and received.command.command == "ping"
            await agent.goodbye()

    asyncio.run(scenario())


@pytest.mark.parametrize("agent_id", ["", "-starts-with-a-dash", "x" * 200, "bad/slash"])
def test_invalid_agent_ids_are_refused(agent_id: str) -> None:
    async def scenario() -> None:
        async with serving() as (_, _, _, channel):
            stub = pb_grpc.MonitoringServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RegisterAgent(registration(agent_id), timeout=WAIT)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            agent = AgentCall(channel, agent_id, metadata=[("agent-id", agent_id)] if agent_id else [])
            assert await asyncio.wait_for(agent.call.code(), WAIT) == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(scenario())


def test_the_agent_limit_refuses_new_agents_but_not_a_reconnect() -> None:
    async def scenario() -> None:
        cfg = plaintext_config(limits=LimitsSection(max_agents=1))
        async with serving(cfg) as (server, producers, _, channel):
            first = AgentCall(channel, "web-1")
            first.send(pb.AgentMessage(heartbeat=pb.AgentHeartbeat()))
            await until(lambda: server.sessions.is_connected("web-1"), what="the first stream")
            second = AgentCall(channel, "web-2")
            assert await asyncio.wait_for(second.call.code(), WAIT) == grpc.StatusCode.RESOURCE_EXHAUSTED
            again = AgentCall(channel, "web-1")  # the same agent may replace its stream
            again.send(pb.AgentMessage(heartbeat=pb.AgentHeartbeat()))
            await until(lambda: server.sessions.stats.closed == 1, what="the older stream replaced")
            assert server.sessions.is_connected("web-1") and len(server.sessions) == 1
            first.call.cancel()
            await again.goodbye()
            await server.bridge.drain(WAIT)
            reasons = [s.reason for s in producers.producer.on("agent-status")]  # type: ignore[attr-defined]
            # The replaced stream's DISCONNECTED is followed by the present stream's CONNECTED again.
            assert reasons == ["", "", "replaced by a newer stream", "", "goodbye"]

    asyncio.run(scenario())


def test_a_draining_server_refuses_registrations_and_streams() -> None:
    async def scenario() -> None:
        async with serving() as (server, _, _, channel):
            server.sessions.drain()
            stub = pb_grpc.MonitoringServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RegisterAgent(registration(), timeout=WAIT)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            agent = AgentCall(channel, "web-1")
            assert await asyncio.wait_for(agent.call.code(), WAIT) == grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())


REGISTER = "/monitoring.v1.MonitoringService/RegisterAgent"
STREAM = "/monitoring.v1.MonitoringService/StreamCommunication"


def test_malformed_requests_are_invalid_argument_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving() as (server, _, _, channel):
            register = channel.unary_unary(REGISTER, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await register(b"\xff\xff\xff", timeout=WAIT)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (info.value.details() or "").startswith("malformed AgentRegistration")
            stream = channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
            ok = pb.AgentMessage(metrics_data=pb.MetricsData(agent_id="web-1", sequence=1)).SerializeToString()
            call = stream(iter([ok, b"\xff\xff\xff"]), metadata=(("agent-id", "web-1"),), timeout=WAIT)
            replies = [pb.ServerMessage.FromString(raw) async for raw in _until_error(call)]
            assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [r.acknowledgment.last_sequence for r in replies] == [1]  # what came before is still acked
            await until(lambda: len(server.sessions) == 0, what="the session closed")

    asyncio.run(scenario())
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert "disconnected: malformed AgentMessage" in caplog.text


async def _until_error(call: grpc.aio.StreamStreamCall) -> AsyncIterator[bytes]:
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for raw in call:
            yield raw


def test_registration_fields_and_rate_are_bounded() -> None:
    async def scenario() -> None:
        async with serving() as (_, _, _, channel):
            stub = pb_grpc.MonitoringServiceStub(channel)
            big = registration()
            big.hostname = "h" * 5000
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RegisterAgent(big, timeout=WAIT)
            assert (info.value.code(), info.value.details()) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "registration refused: hostname longer than 1024 bytes",
            )
            codes = []
            for _ in range(15):
                try:
                    await stub.RegisterAgent(registration(), timeout=WAIT)
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
            assert codes == [grpc.StatusCode.OK] * 10 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5
            await stub.RegisterAgent(registration("web-2"), timeout=WAIT)  # another agent is not slowed

    asyncio.run(scenario())

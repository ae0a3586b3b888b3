"""Link: one connection against a real in-process grpc.aio server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from monitor_agentd.config import AgentTlsSection, ConnectionSection
from monitor_agentd.errors import LinkFailed
from monitor_agentd.outbound import Outbound
from monitor_agentd.spool import Spool
from monitor_agentd.stream import Link, channel_options, stream_metadata
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.transport import client_keepalive_options
from monitoring_testsupport.fakes.agent import FakeMonitord, unused_address

WAIT = 10.0
PLAINTEXT = ConnectionSection(tls=AgentTlsSection(mode="plaintext"), retry_nacked_seconds=0.01)


class Commands:
    """A command sink that remembers what it got."""

    def __init__(self) -> None:
        self.got: list[pb.CommandMessage] = []
        self.arrived = asyncio.Event()

    def submit(self, command: pb.CommandMessage) -> None:
        self.got.append(command)
        self.arrived.set()


class Presence:
    def __init__(self) -> None:
        self.connection = 0

    def registration(self) -> pb.AgentRegistration:
        self.connection += 1
        return pb.AgentRegistration(agent_id="a1", hostname="h", connection=self.connection)

    def heartbeat(self, state: pb.AgentState.ValueType) -> pb.AgentHeartbeat:
        return pb.AgentHeartbeat(agent_id="a1", state=state)


def record(seq: int) -> pb.MetricsData:
    return pb.MetricsData(agent_id="a1", sequence=seq)


def response(command_id: str, status: pb.CommandStatus.ValueType = pb.SUCCEEDED) -> pb.CommandResponseMessage:
    return pb.CommandResponseMessage(command_id=command_id, agent_id="a1", status=status)


def make(records: int = 0, cfg: ConnectionSection = PLAINTEXT) -> tuple[Link, Outbound, Commands]:
    outbound = Outbound(Spool(100))
    for seq in range(1, records + 1):
        outbound.add_record(record(seq))
    commands = Commands()
    return Link(cfg, "a1", outbound, commands, Presence()), outbound, commands


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), WAIT))


def test_channel_options_are_the_shared_keepalive_contract() -> None:
    cfg = ConnectionSection(keepalive_seconds=25, keepalive_timeout_seconds=5)
    assert channel_options(cfg)[:-1] == client_keepalive_options(25, 5)
    assert ("grpc.enable_retries", 0) in channel_options(cfg)


def test_the_largest_server_message_accepted_is_a_config_key() -> None:
    assert ("grpc.max_receive_message_length", 1_048_576) in channel_options(ConnectionSection())
    cfg = ConnectionSection(max_receive_message_bytes=65_536)
    assert ("grpc.max_receive_message_length", 65_536) in channel_options(cfg)


def test_streams_the_spool_then_says_goodbye_once_everything_is_acked() -> None:
    async def scenario() -> None:
        async with FakeMonitord() as server:
            link, outbound, _ = make(records=3)
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1, 2, 3])
            assert link.connected.is_set() and link.server_id == "fake-1"
            outbound.finish()
            await task  # returns normally: a graceful close
            assert len(outbound.spool) == 0 and outbound.spool.acked == 3
            assert server.received[-1].heartbeat.state == pb.AGENT_STATE_STOPPING
            assert server.registrations[0].agent_id == "a1"
            assert not link.connected.is_set() and link.last_stream_seconds > 0
            assert len(link.attempts) == 1

    run(scenario)


class RecordingMonitord(FakeMonitord):
    """The fake server, also keeping each stream's call metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_metadata: list[dict[str, str]] = []

    async def StreamCommunication(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: Any
    ) -> AsyncIterator[pb.ServerMessage]:
        self.stream_metadata.append(dict(context.invocation_metadata()))
        async for message in super().StreamCommunication(request_iterator, context):
            yield message


def test_each_stream_names_the_connection_it_registered() -> None:
    async def scenario() -> None:
        server = RecordingMonitord()
        async with server:
            link, outbound, _ = make(records=1)
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1])
            server.end_stream()
            with pytest.raises(LinkFailed):
                await task
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.streams == 2)
            outbound.finish()
            await task
            assert [r.connection for r in server.registrations] == [1, 2]
            assert [(m["agent-id"], m["agent-connection"]) for m in server.stream_metadata] == [
                ("a1", "1"),
                ("a1", "2"),
            ]

    run(scenario)


def test_stream_metadata() -> None:
    assert stream_metadata("a1", 7) == (("agent-id", "a1"), ("agent-connection", "7"))


def test_refused_registration_fails_the_link() -> None:
    async def scenario() -> None:
        async with FakeMonitord(accept=False) as server:
            link, _, _ = make()
            with pytest.raises(LinkFailed, match="registration refused: not welcome"):
                await link.run(server.address)
            assert not link.connected.is_set()

    run(scenario)


def test_no_server_fails_within_the_connect_timeout() -> None:
    async def scenario() -> None:
        cfg = ConnectionSection(tls=AgentTlsSection(mode="plaintext"), connect_timeout_seconds=0.2)
        link, _, _ = make(cfg=cfg)
        with pytest.raises(LinkFailed) as info:
            await link.run(unused_address())
        assert not info.value.immediate and str(info.value).startswith(("DEADLINE_EXCEEDED", "UNAVAILABLE"))

    run(scenario)


def test_unreadable_credentials_fail_the_attempt() -> None:
    async def scenario() -> None:
        tls = AgentTlsSection(mode="tls", ca_file="/nonexistent/ca.crt")
        link, _, _ = make(cfg=ConnectionSection(tls=tls))
        with pytest.raises(LinkFailed, match=r"cannot read CA file /nonexistent/ca\.crt"):
            await link.run(unused_address())

    run(scenario)


def test_server_closing_the_stream_fails_the_link_and_the_next_stream_replays_unacked() -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, _ = make(records=3)
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1, 2, 3])
            server.ack_metrics(1, 1)
            server.end_stream()
            with pytest.raises(LinkFailed, match="server closed the stream"):
                await task
            assert len(outbound.spool) == 2 and outbound.spool.last_acked == 1

            server.auto_ack = True
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1, 2, 3, 2, 3])
            outbound.finish()
            await task
            assert len(outbound.spool) == 0 and server.streams == 2

    run(scenario)


def test_reconnect_request_half_closes_and_asks_for_an_immediate_reconnect() -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, _ = make(records=2)
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1, 2])
            server.send(pb.ServerMessage(control=pb.ServerControl(action=pb.ServerControl.RECONNECT, reason="drain")))
            with pytest.raises(LinkFailed, match=r"server asked to reconnect \(drain\)") as info:
                await task
            assert info.value.immediate
            assert len(outbound.spool) == 2  # kept for the next server

    run(scenario)


def test_retriable_nack_resends_everything_unacked_in_order_once_all_were_answered() -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, _ = make(records=3)
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1, 2, 3])
            server.ack_metrics(1, 1, success=False, retriable=True)
            server.ack_metrics(2, 3, success=False, retriable=True)
            await server.until(lambda: server.metrics() == [1, 2, 3, 1, 2, 3])
            server.ack_metrics(1, 3)
            outbound.finish()
            await task
            assert outbound.spool.acked == 3 and outbound.spool.dropped == 0

    run(scenario)


def test_permanent_nack_drops_the_records() -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, _ = make(records=3)
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.metrics() == [1, 2, 3])
            server.ack_metrics(2, 2, success=False)
            server.ack_metrics(1, 1)
            server.ack_metrics(3, 3)
            outbound.finish()
            await task
            assert outbound.spool.dropped == 1 and outbound.spool.acked == 2
            assert server.metrics() == [1, 2, 3]

    run(scenario)


def test_commands_go_to_the_sink_and_responses_are_resent_until_stored() -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, commands = make()
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: server.streams == 1)
            server.send(pb.ServerMessage(command=pb.CommandMessage(command_id="c1", command="ping")))
            await commands.arrived.wait()
            assert [c.command_id for c in commands.got] == ["c1"]

            outbound.add_response(response("c1"))
            await server.until(lambda: len(server.responses()) == 1)
            nack = pb.Ack(
                kind=pb.ACK_KIND_COMMAND_RESPONSE,
                success=False,
                retriable=True,
                command_id="c1",
                command_status=pb.SUCCEEDED,
                message="kafka down",
            )
            server.send(pb.ServerMessage(acknowledgment=nack))
            await server.until(lambda: len(server.responses()) == 2)
            ok = pb.Ack(kind=pb.ACK_KIND_COMMAND_RESPONSE, success=True, command_id="c1", command_status=pb.SUCCEEDED)
            server.send(pb.ServerMessage(acknowledgment=ok))
            outbound.finish()
            await task
            assert not outbound.unacknowledged
            assert server.received[-1].heartbeat.state == pb.AGENT_STATE_STOPPING

    run(scenario)


@pytest.mark.parametrize("status", [pb.FAILED, pb.COMMAND_STATUS_UNSPECIFIED])  # unspecified: refused for size
def test_permanently_refused_response_is_forgotten(status: pb.CommandStatus.ValueType) -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, _ = make()
            outbound.add_response(response("c2", pb.FAILED))
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: len(server.responses()) == 1)
            refused = pb.Ack(kind=pb.ACK_KIND_COMMAND_RESPONSE, success=False, command_id="c2", command_status=status)
            server.send(pb.ServerMessage(acknowledgment=refused))
            outbound.finish()
            await task
            assert len(server.responses()) == 1 and not outbound.unacknowledged

    run(scenario)


def test_a_server_that_never_acks_answers_cannot_grow_the_agents_memory(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            link, outbound, commands = make(cfg=dataclasses.replace(PLAINTEXT, max_unacknowledged_responses=16))
            for n in range(16):
                outbound.add_response(response(f"c{n}"))
            task = asyncio.create_task(link.run(server.address))
            await server.until(lambda: len(server.responses()) == 16)
            for n in range(50):
                server.send(pb.ServerMessage(command=pb.CommandMessage(command_id=f"x{n}\x1b", command="ping")))
            while link.unanswered < 50:  # the fake server is not told about the agent's drops: poll
                await asyncio.sleep(0.01)
            outbound.ack_response("c0", pb.SUCCEEDED)  # one slot frees: the next command is taken
            server.send(pb.ServerMessage(command=pb.CommandMessage(command_id="ok", command="ping")))
            await commands.arrived.wait()
            assert [c.command_id for c in commands.got] == ["ok"]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkFailed):
                await task

    caplog.set_level(logging.WARNING, "monitor_agentd")
    run(scenario)
    (line,) = [r.getMessage() for r in caplog.records if "dropped unanswered" in r.getMessage()]
    assert "x0\\x1b dropped unanswered: 16 responses wait for the server's ack (limit 16)" in line

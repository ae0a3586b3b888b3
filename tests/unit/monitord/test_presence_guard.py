"""The presence guard: an outdated DISCONNECTED/STALE of a held agent is answered with CONNECTED again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from monitord.config import KafkaSection
from monitord.presence_guard import PresenceGuard
from monitord.publishers import PresencePublisher
from monitord.session import Registration
from monitord.sessions import SessionRegistry
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.monitord import FakeContext, RecordingPublisher


@asynccontextmanager
async def holding(connection: int) -> AsyncIterator[tuple[PresenceGuard, RecordingPublisher]]:
    """Server "b" holding agent web-1 on ``connection``; the CONNECTED of the open is not recorded."""
    sink = RecordingPublisher()
    presence = PresencePublisher(sink, KafkaSection(), "b")
    sessions = SessionRegistry(presence, max_inflight_total=10)
    sessions.register(Registration("web-1", "web-1.example", "2.0", frozenset(), "i-1", 2.0, "p", time.time()))
    async with sessions.opened("web-1", "peer-1", FakeContext().write, max_inflight=5, connection=connection):
        sink.published.clear()
        yield PresenceGuard(sessions, presence), sink


def record(state: pb.AgentPresence.ValueType, connection: int, server: str = "a") -> pb.AgentStatus:
    return pb.AgentStatus(agent_id="web-1", state=state, connection=connection, server_id=server)


def test_an_older_connections_late_disconnect_is_answered() -> None:
    async def scenario() -> None:
        async with holding(6) as (guard, sink):
            guard.on_status(record(pb.DISCONNECTED, 5))
            guard.on_status(record(pb.STALE, 4))
            assert [(s.state, s.connection, s.server_id, s.peer, s.hostname) for s in sink.presence()] == [
                (pb.CONNECTED, 6, "b", "peer-1", "web-1.example"),
                (pb.CONNECTED, 6, "b", "peer-1", "web-1.example"),
            ]
            assert guard.republished == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "status",
    [
        record(pb.CONNECTED, 5),  # not an end
        record(pb.DISCONNECTED, 6),  # about the held connection itself
        record(pb.DISCONNECTED, 7),  # about a newer connection: the held one is outdated
        record(pb.DISCONNECTED, 0),  # unknown number: log order is the rule
        record(pb.DISCONNECTED, 5, server="b"),  # this server's own: the registry already answered
        pb.AgentStatus(agent_id="db-1", state=pb.DISCONNECTED, connection=1, server_id="a"),  # not held
    ],
)
def test_records_that_need_no_answer(status: pb.AgentStatus) -> None:
    async def scenario() -> None:
        async with holding(6) as (guard, sink):
            guard.on_status(status)
            assert sink.presence() == [] and guard.republished == 0

    asyncio.run(scenario())


def test_a_session_without_a_number_never_answers() -> None:
    async def scenario() -> None:
        async with holding(0) as (guard, sink):
            guard.on_status(record(pb.DISCONNECTED, 5))
            assert sink.presence() == []

    asyncio.run(scenario())


def test_republished_connected_keeps_the_time_the_stream_opened() -> None:
    async def scenario() -> None:
        async with holding(6) as (guard, sink):
            guard.on_status(record(pb.DISCONNECTED, 5))
            [again] = sink.presence()
            session = guard.sessions.get("web-1")
            assert session is not None and again.at.ToNanoseconds() == int(session.connected_at * 1e9)

    asyncio.run(scenario())

"""The session registry: one stream per agent, presence with the disconnect reason, the stale watch,
redirect on shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from monitord.config import KafkaSection
from monitord.publishers import PresencePublisher
from monitord.session import Registration, Session
from monitord.sessions import SessionRegistry
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.monitord import WAIT, FakeContext, RecordingPublisher, until


def registry() -> tuple[SessionRegistry, RecordingPublisher]:
    sink = RecordingPublisher()
    return SessionRegistry(PresencePublisher(sink, KafkaSection(), "s1"), max_inflight_total=10), sink


def presence(sink: RecordingPublisher) -> list[tuple[str, str, str]]:
    return [(s.agent_id, pb.AgentPresence.Name(s.state), s.reason) for s in sink.presence()]


async def hold(
    reg: SessionRegistry,
    agent_id: str,
    body: Callable[[Session], Awaitable[None]],
    ctx: FakeContext | None = None,
    connection: int = 0,
) -> None:
    ctx = ctx or FakeContext()
    async with reg.opened(agent_id, f"peer-of-{agent_id}", ctx.write, max_inflight=5, connection=connection) as session:
        await body(session)


def test_goodbye_and_a_silent_half_close() -> None:
    async def scenario() -> None:
        reg, sink = registry()
        reg.register(Registration("web-1", "web-1.example", "2.0", frozenset(), "i-1", 2.0, "p", time.time()))

        async def goodbye(session: Session) -> None:
            assert reg.get("web-1") is session and reg.is_connected("web-1") and len(reg) == 1
            session.received_metrics()
            session.said_goodbye()

        await hold(reg, "web-1", goodbye)

        async def vanish(session: Session) -> None:
            return None

        await hold(reg, "web-2", vanish)
        assert presence(sink) == [
            ("web-1", "CONNECTED", ""),
            ("web-1", "DISCONNECTED", "goodbye"),
            ("web-2", "CONNECTED", ""),
            ("web-2", "DISCONNECTED", "stream closed without a goodbye (agent died or connection lost)"),
        ]
        assert sink.presence()[0].hostname == "web-1.example" and sink.presence()[0].instance_id == "i-1"
        assert not reg.is_connected("web-1") and len(reg) == 0
        assert (reg.stats.opened, reg.stats.closed, reg.stats.connected) == (2, 2, 0)

    asyncio.run(scenario())


def test_a_newer_stream_replaces_the_older_one(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        reg, sink = registry()
        opened = asyncio.Event()
        release = asyncio.Event()

        async def first(session: Session) -> None:
            opened.set()
            await asyncio.sleep(WAIT * 2)  # cancelled by the replacement

        async def second(session: Session) -> None:
            await release.wait()
            session.said_goodbye()

        older = asyncio.create_task(hold(reg, "web-1", first, connection=4))
        await asyncio.wait_for(opened.wait(), WAIT)
        newer = asyncio.create_task(hold(reg, "web-1", second, connection=5))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(older, WAIT)
        assert reg.is_connected("web-1") and len(reg) == 1  # the newer stream stays
        release.set()
        await asyncio.wait_for(newer, WAIT)
        # The replaced stream's DISCONNECTED is followed by the newer stream's CONNECTED again.
        assert presence(sink) == [
            ("web-1", "CONNECTED", ""),
            ("web-1", "CONNECTED", ""),
            ("web-1", "DISCONNECTED", "replaced by a newer stream"),
            ("web-1", "CONNECTED", ""),
            ("web-1", "DISCONNECTED", "goodbye"),
        ]
        assert [s.connection for s in sink.presence()] == [4, 5, 4, 5, 5]
        connected_again = sink.presence()[3]
        assert connected_again.at == sink.presence()[1].at  # dated when the stream opened

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert "Agent 'web-1' opened a new stream from peer-of-web-1; closing its older stream" in caplog.text


def test_silent_agents_are_cancelled_as_stale() -> None:
    async def scenario() -> None:
        reg, sink = registry()
        opened = asyncio.Event()

        async def idle(session: Session) -> None:
            session.heartbeat_every(1.0)
            opened.set()
            await asyncio.sleep(WAIT * 2)

        task = asyncio.create_task(hold(reg, "web-1", idle))
        await asyncio.wait_for(opened.wait(), WAIT)
        session = reg.get("web-1")
        assert session is not None
        reg.cancel_stale(time.monotonic() + 4)  # 3 intervals but under the 5 s floor: not yet
        assert not task.done() and not session.is_stale(time.monotonic() + 4)
        session.heard_from()
        reg.cancel_stale(time.monotonic() + 31)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        (_, _), (state, reason) = [(p[1], p[2]) for p in presence(sink)]
        assert state == "STALE" and reason.startswith("stale: silent for 3")

    asyncio.run(scenario())


def test_watch_stale_runs_until_cancelled() -> None:
    async def scenario() -> None:
        reg, _ = registry()
        watch = asyncio.create_task(reg.watch_stale(period=0.01))
        await asyncio.sleep(0.05)
        watch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch

    asyncio.run(scenario())


def test_redirect_all_tells_every_agent_and_waits_for_the_streams() -> None:
    async def scenario() -> None:
        reg, sink = registry()
        contexts = {a: FakeContext() for a in ("web-1", "web-2")}

        async def until_redirected(session: Session) -> None:
            ctx = contexts[session.agent_id]
            await until(lambda: any(m.HasField("control") for m in ctx.written), what="the redirect")

        tasks = [asyncio.create_task(hold(reg, a, until_redirected, contexts[a])) for a in contexts]
        await until(lambda: len(reg) == 2, what="both streams open")
        reg.drain()
        assert reg.draining
        await reg.redirect_all(time.monotonic() + WAIT)
        assert len(reg) == 0
        await asyncio.gather(*tasks)
        for ctx in contexts.values():
            (control,) = ctx.written
            assert control.control.action == pb.ServerControl.RECONNECT
            assert control.control.reason == "server shutting down"
        assert [p for p in presence(sink) if p[1] == "DISCONNECTED"] == [
            ("web-1", "DISCONNECTED", "server shutting down"),
            ("web-2", "DISCONNECTED", "server shutting down"),
        ]

    asyncio.run(scenario())


def test_redirect_gives_up_at_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        reg, _ = registry()
        opened = asyncio.Event()

        async def stuck_write(_message: pb.ServerMessage) -> None:
            await asyncio.sleep(WAIT * 2)

        async def stay(session: Session) -> None:
            opened.set()
            await asyncio.sleep(WAIT * 2)

        async def run() -> None:
            async with reg.opened("web-1", "p", stuck_write, max_inflight=1) as session:
                await stay(session)

        task = asyncio.create_task(run())
        await asyncio.wait_for(opened.wait(), WAIT)
        started = time.monotonic()
        await reg.redirect_all(time.monotonic() + 0.2)
        assert time.monotonic() - started < WAIT and len(reg) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.DEBUG, logger="monitord.sessions"):
        asyncio.run(scenario())
    assert "Could not redirect agent 'web-1'" in caplog.text
    assert "Agent 'web-1' disconnected: connection lost" in caplog.text


def test_a_stream_error_ends_the_session_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        reg, sink = registry()

        async def broken(session: Session) -> None:
            raise RuntimeError("boom")

        async def reset(session: Session) -> None:
            raise ExceptionGroup("stream", [ConnectionResetError("reset by peer")])

        await hold(reg, "web-1", broken)  # the error ends the stream, it does not escape
        await hold(reg, "web-2", reset)
        reasons = [p[2] for p in presence(sink) if p[1] == "DISCONNECTED"]
        assert reasons == ["stream error: RuntimeError: boom", "stream error: ConnectionResetError: reset by peer"]

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["Unexpected error on the stream of agent 'web-1'"]


def test_every_record_of_a_stream_carries_its_connection() -> None:
    async def scenario() -> None:
        reg, sink = registry()
        reg.register(Registration("web-1", "h", "2.0", frozenset(), "i-1", 2.0, "p", time.time(), connection=7))

        async def vanish(session: Session) -> None:
            assert session.connection == 7  # no metadata: the registration's number

        await hold(reg, "web-1", vanish)
        await hold(reg, "web-1", vanish, connection=9)  # metadata wins over the registration
        assert [(pb.AgentPresence.Name(s.state), s.connection) for s in sink.presence()] == [
            ("CONNECTED", 7),
            ("DISCONNECTED", 7),
            ("CONNECTED", 9),
            ("DISCONNECTED", 9),
        ]

    asyncio.run(scenario())


def test_a_replacement_with_an_older_connection_number_is_not_announced_again() -> None:
    async def scenario() -> None:
        reg, sink = registry()
        opened = asyncio.Event()

        async def first(session: Session) -> None:
            opened.set()
            await asyncio.sleep(WAIT * 2)

        async def second(session: Session) -> None:
            session.said_goodbye()

        older = asyncio.create_task(hold(reg, "web-1", first, connection=6))
        await asyncio.wait_for(opened.wait(), WAIT)
        await hold(reg, "web-1", second, connection=5)  # out of order: its numbers say it is older
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(older, WAIT)
        states = [(pb.AgentPresence.Name(s.state), s.connection) for s in sink.presence()]
        assert states[:2] == [("CONNECTED", 6), ("CONNECTED", 5)]
        assert sorted(states[2:]) == [("DISCONNECTED", 5), ("DISCONNECTED", 6)]  # no CONNECTED again

    asyncio.run(scenario())


def test_registrations_are_bounded_the_oldest_forgotten_first() -> None:
    reg = SessionRegistry(
        PresencePublisher(RecordingPublisher(), KafkaSection(), "s1"), max_inflight_total=10, max_registrations=2
    )
    for agent_id in ("a", "b", "a", "c"):  # "a" registered again: now newer than "b"
        reg.register(Registration(agent_id, "h", "2.0", frozenset(), "i", 2.0, "p", time.time()))
    assert [r is not None for r in map(reg.registration, ("a", "b", "c"))] == [True, False, True]

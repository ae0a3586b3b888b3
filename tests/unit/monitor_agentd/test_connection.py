"""The reconnect loop: server rotation, backoff, reset after healthy streams, redirects."""

from __future__ import annotations

import asyncio

import pytest

from monitor_agentd.backoff import Backoff, BackoffPolicy
from monitor_agentd.config import AgentTlsSection, ConnectionSection
from monitor_agentd.connection import Connector
from monitor_agentd.errors import LinkFailed
from monitor_agentd.outbound import Outbound
from monitor_agentd.spool import Spool
from monitor_agentd.stream import Link
from monitoring.v1 import monitoring_pb2 as pb

CFG = ConnectionSection(tls=AgentTlsSection(mode="plaintext"), healthy_after_seconds=30)


class Presence:
    def registration(self) -> pb.AgentRegistration:
        return pb.AgentRegistration()

    def heartbeat(self, state: pb.AgentState.ValueType) -> pb.AgentHeartbeat:
        return pb.AgentHeartbeat()


class Sink:
    def submit(self, command: pb.CommandMessage) -> None: ...


class ScriptedLink(Link):
    """A Link whose connections end as scripted: (stream seconds, failure or None for a graceful close)."""

    def __init__(self, script: list[tuple[float, LinkFailed | None]]) -> None:
        super().__init__(CFG, "a1", Outbound(Spool(10)), Sink(), Presence())
        self.script = script
        self.addresses: list[str] = []

    async def run(self, address: str) -> None:
        self.addresses.append(address)
        self.last_stream_seconds, failure = self.script.pop(0)
        if failure is not None:
            raise failure


class Sleeps:
    def __init__(self, connector: list[Connector]) -> None:
        self.delays: list[float] = []
        self.shown: list[float] = []
        self._connector = connector

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.shown.append(self._connector[0].backoff_delay)


def connect(
    script: list[tuple[float, LinkFailed | None]], servers: tuple[str, ...] = ("s1:1", "s2:2")
) -> tuple[Connector, Sleeps]:
    holder: list[Connector] = []
    sleeps = Sleeps(holder)
    backoff = Backoff(BackoffPolicy(initial=1, multiplier=2, maximum=10, jitter=1.0), rand=lambda: 0.5)
    connector = Connector(ScriptedLink(script), servers, CFG, Spool(10), backoff=backoff, sleep=sleeps)
    holder.append(connector)
    asyncio.run(asyncio.wait_for(connector.run(), 10))
    return connector, sleeps


def test_failures_back_off_and_rotate_over_the_servers(caplog: pytest.LogCaptureFixture) -> None:
    failed = LinkFailed("UNAVAILABLE: connection refused")
    connector, sleeps = connect([(0, failed), (0, failed), (0, failed), (0, None)])
    link = connector.link
    assert isinstance(link, ScriptedLink) and link.addresses == ["s1:1", "s2:2", "s1:1", "s2:2"]
    assert sleeps.delays == [0.5, 1.0, 2.0] and sleeps.shown == sleeps.delays
    assert connector.connection_failures == 3 and connector.backoff_delay == 0 and connector.backoff_attempt == 3
    assert connector.connection_state == "connecting to s2:2"
    assert (
        "✗ Connection to s1:1 failed: UNAVAILABLE: connection refused; reconnecting in 0.5s (0 metrics spooled)"
        in caplog.text
    )


def test_a_healthy_stream_resets_the_backoff() -> None:
    failed = LinkFailed("server closed the stream")
    _, sleeps = connect([(0, failed), (0, failed), (31, failed), (0, None)])
    assert sleeps.delays == [0.5, 1.0, 0.5]


def test_redirect_reconnects_at_once() -> None:
    connector, sleeps = connect(
        [(0, LinkFailed("x")), (0, LinkFailed("server asked to reconnect (drain)", immediate=True)), (0, None)]
    )
    assert sleeps.delays == [0.5, 0.0] and connector.backoff_attempt == 0


def test_state_and_reconfigure() -> None:
    link = ScriptedLink([])
    connector = Connector(link, ["s1:1"], CFG, Spool(10))
    assert connector.describe() == "starting" and not connector.connected
    link.connected.set()
    link.server_id = "m-1"
    assert connector.describe() == "streaming to m-1" and connector.connected
    link.server_id = ""
    assert connector.describe() == "streaming to ?"
    faster = ConnectionSection(backoff_initial_seconds=0.1, backoff_jitter=0)
    connector.reconfigure(["s9:9"], faster)
    assert connector.backoff.next_delay() == 0.1
    link.connected.clear()
    link.script = [(0, None)]
    asyncio.run(connector.run())
    assert link.addresses == ["s9:9"]

"""Agent: the lifecycle object composing the parts, against a real in-process server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from types import MappingProxyType

import pytest

from monitor_agentd.app import Agent, config_hash
from monitor_agentd.collectors.mock import MockCollector
from monitor_agentd.config import (
    AgentConfig,
    AgentSection,
    AgentTlsSection,
    CollectionSection,
    CommandSpec,
    CommandsSection,
    ConnectionSection,
    SpoolSection,
)
from monitor_agentd.errors import CredentialsError, StateDirError
from monitor_agentd.state import StateDir
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.exits import EX_OK, EX_TEMPFAIL
from monitoring_common.sections import MetricsSection
from monitoring_testsupport.fakes.agent import FakeMonitord, unused_address

WAIT = 20.0


def config(
    state: Path, server: str, *, iterations: int = 3, interval: float = 0.01, **connection: float
) -> AgentConfig:
    return AgentConfig(
        agent=AgentSection(id="a1", servers=(server,), state_dir=str(state)),
        collection=CollectionSection(mode="mock", interval_seconds=interval, iterations=iterations),
        connection=ConnectionSection(tls=AgentTlsSection(mode="plaintext"), **connection),  # type: ignore[arg-type]
        spool=SpoolSection(fsync=False),
    )


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, WAIT))  # type: ignore[arg-type]


def lock_is_free(state: Path) -> bool:
    other = StateDir(str(state))
    try:
        other.acquire()
    except StateDirError:
        return False
    other.release()
    return True


def test_iterations_stream_get_acked_and_end_with_a_goodbye(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeMonitord() as server:
            agent = Agent(config(tmp_path, server.address))
            assert not lock_is_free(tmp_path)
            assert await agent.run(asyncio.Event()) == EX_OK
            assert server.metrics() == [1, 2, 3]
            assert server.received[-1].heartbeat.state == pb.AGENT_STATE_STOPPING
            assert server.registrations[0].agent_id == "a1" and server.registrations[0].last_sequence == 0
            assert agent.spool.acked == 3 and agent.sequence == 3
            assert lock_is_free(tmp_path)  # run() released everything
            await agent.shutdown()  # and shutting down again is harmless

            again = Agent(config(tmp_path, server.address, iterations=1), collector=MockCollector("a1"))
            assert again.sequence == 3  # continues after the last record ever spooled
            assert await again.run(asyncio.Event()) == EX_OK
            assert server.metrics()[-1] == 4

    run(scenario())


def test_unacknowledged_at_the_ack_timeout_exits_tempfail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with FakeMonitord(auto_ack=False) as server:
            agent = Agent(config(tmp_path, server.address, iterations=2, ack_timeout_seconds=0.1))
            assert await agent.run(asyncio.Event()) == EX_TEMPFAIL
            assert len(agent.spool) == 2 and lock_is_free(tmp_path)

    run(scenario())
    assert "✗ Stopping with 2 metrics unacknowledged after waiting 0s" in caplog.text


def test_stop_signal_leaves_the_unacked_on_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, unused_address(), iterations=0, connect_timeout_seconds=30)
        stop = asyncio.Event()
        async with Agent(cfg, stop_grace=0.05) as agent:
            task = asyncio.create_task(agent.run(stop))
            await asyncio.wait_for(agent.outbound.wait(), WAIT)  # the first record, spooled
            stop.set()
            assert await task == EX_OK
        assert lock_is_free(tmp_path)
        left = Agent(cfg)
        assert len(left.spool) >= 1 and left.spool.replayed_from_disk == len(left.spool)
        await left.shutdown()

    caplog.set_level("INFO")
    run(scenario())
    assert "metrics unacknowledged; they stay spooled on disk" in caplog.text
    assert "Spooled (not connected)" in caplog.text


def test_context_manager_releases_after_a_failed_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = dataclasses.replace(config(tmp_path, unused_address()), metrics=MetricsSection(listen="256.0.0.1:1"))
        with pytest.raises(OSError, match="metrics endpoint cannot listen"):
            async with Agent(cfg) as agent:
                agent.start_metrics()
        assert lock_is_free(tmp_path)

        ok = dataclasses.replace(cfg, metrics=MetricsSection(listen=unused_address()))
        async with Agent(ok) as agent:
            agent.start_metrics()
            assert agent.metrics is not None and agent.metrics.port > 0
        await agent.shutdown()
        assert lock_is_free(tmp_path)

    run(scenario())


def test_start_refusals(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, unused_address())
        first = Agent(cfg)
        with pytest.raises(StateDirError):
            Agent(cfg)
        await first.shutdown()
        broken = dataclasses.replace(
            cfg, connection=ConnectionSection(tls=AgentTlsSection(mode="tls", ca_file=str(tmp_path / "none")))
        )
        with pytest.raises(CredentialsError):
            Agent(broken)
        assert lock_is_free(tmp_path)

    run(scenario())


def test_commands_reach_the_builtins_through_the_stream(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeMonitord() as server:
            stop = asyncio.Event()
            async with Agent(config(tmp_path, server.address, iterations=0, interval=3600)) as agent:
                task = asyncio.create_task(agent.run(stop))
                await server.until(lambda: server.streams == 1)
                for command_id, name in (("c1", "collect"), ("c2", "info")):
                    server.send(pb.ServerMessage(command=pb.CommandMessage(command_id=command_id, command=name)))
                await server.until(lambda: len([r for r in server.responses() if r.status == pb.SUCCEEDED]) == 2)
                done = {r.command_id: r for r in server.responses() if r.status == pb.SUCCEEDED}
                assert done["c1"].stdout.startswith("collected metrics #")
                info = json.loads(done["c2"].stdout)
                assert info["agent_id"] == "a1" and info["server"] == "fake-1" and len(info["config_hash"]) == 16
                assert info["commands"] == {"running": 0, "allowed": []} and info["mode"] == "mock"
                assert agent.status_line().startswith("streaming to fake-1; spool ")
                stop.set()
                assert await task == EX_OK

    run(scenario())


def test_reload_applies_what_can_change_live(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, unused_address(), iterations=0, interval=3600)
        new = dataclasses.replace(
            cfg,
            agent=dataclasses.replace(cfg.agent, id="renamed", labels=MappingProxyType({"k": "v"})),
            collection=dataclasses.replace(cfg.collection, interval_seconds=5.0, mode="real"),
            spool=dataclasses.replace(cfg.spool, max_records=7, fsync=True),
            commands=CommandsSection(definitions=MappingProxyType({"up": CommandSpec(argv=("/bin/true",))})),
        )
        reloaded = asyncio.Event()

        def reloader() -> AgentConfig:
            reloaded.set()
            return new

        reload, stop = asyncio.Event(), asyncio.Event()
        async with Agent(cfg, stop_grace=0.05) as agent:
            task = asyncio.create_task(agent.run(stop, reload, reloader))
            reload.set()
            await asyncio.wait_for(reloaded.wait(), WAIT)  # applied in the same step as loaded
            assert agent.schedule.interval == 5.0 and agent.spool.max_records == 7
            assert agent.cfg.agent.id == "a1" and agent.cfg.collection.mode == "mock"  # restart only
            assert agent.info()["commands"]["allowed"] == ["up"]
            assert agent.presence.registration().labels["k"] == "v"
            assert agent.healthy()
            stop.set()
            await task

    caplog.set_level("INFO")
    run(scenario())
    for key in ("agent.id", "collection.mode", "spool (except max_records)"):
        assert f"Reload: {key} changed; that takes effect only after a restart" in caplog.text
    assert "✓ Configuration reloaded (interval 5s, 1 commands allowed)" in caplog.text


def test_status_line_and_config_hash(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, unused_address(), iterations=0)
        async with Agent(cfg) as agent:
            assert agent.status_line() == "starting; spool 0 unacked; last ack #0"
            agent.spool.max_records = 1
            agent.schedule.collect_now()
            agent.schedule.collect_now()
            assert agent.status_line() == "starting; spool 1 unacked, 1 dropped; last ack #0"
        assert config_hash(cfg) == config_hash(dataclasses.replace(cfg)) != config_hash(AgentConfig())

    run(scenario())

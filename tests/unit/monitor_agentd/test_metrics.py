"""The /metrics families, scraped from the real parts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from monitor_agentd import metrics
from monitor_agentd.builtins import Builtins
from monitor_agentd.collectors.mock import MockCollector
from monitor_agentd.commands import CommandRunner
from monitor_agentd.config import AgentTlsSection, CommandsSection, ConnectionSection
from monitor_agentd.connection import Connector
from monitor_agentd.journal import CommandJournal
from monitor_agentd.outbound import Outbound
from monitor_agentd.presence import Presence
from monitor_agentd.schedule import Schedule
from monitor_agentd.spool import Spool
from monitor_agentd.spool_store import SpoolStore
from monitor_agentd.stream import Link
from monitoring.v1 import monitoring_pb2 as pb


class _Stats(Collector):
    def __init__(self, stats: metrics.AgentStats) -> None:
        self._stats = stats

    def collect(self) -> list[Metric]:
        return list(metrics.collect(self._stats))


def scrape(stats: metrics.AgentStats) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Stats(stats))
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_every_figure_is_exported(tmp_path: Path) -> None:
    async def scenario() -> dict[str, float]:
        # A previous run left two records on disk, the second segment with a torn tail.
        seed = Spool(10, SpoolStore(tmp_path, fsync=False))
        seed.load()
        seed.add(pb.MetricsData(agent_id="a1", sequence=1))
        seed.add(pb.MetricsData(agent_id="a1", sequence=2))
        seed.close()
        with (tmp_path / "seg-00000000000000000001.log").open("ab") as f:
            f.write(b"torn")
        spool = Spool(2, SpoolStore(tmp_path, fsync=False))
        assert spool.load() == 2
        outbound = Outbound(spool)
        connected = asyncio.Event()
        schedule = Schedule("a1", "h", MockCollector("a1"), outbound, connected, interval=1, sequence=2)
        commands = CommandRunner(CommandsSection(), "a1", Builtins(schedule, dict), outbound, CommandJournal(None))
        presence = Presence("a1", schedule, spool, commands)
        cfg = ConnectionSection(tls=AgentTlsSection(mode="plaintext"))
        link = Link(cfg, "a1", outbound, commands, presence, connected=connected)
        connector = Connector(link, ["s:1"], cfg, spool)
        schedule.collect_now()
        schedule.collect_now()  # the spool holds two: the oldest are dropped
        stats = metrics.AgentStats(schedule, spool, connector, commands)
        assert metrics.endpoint("127.0.0.1:9100", stats).listen == "127.0.0.1:9100"
        found = scrape(stats)
        spool.close()
        return found

    found = asyncio.run(scenario())
    assert found["monitor_agentd_records_collected_total"] == 2
    assert found["monitor_agentd_collection_seconds_count"] == 2
    assert found['monitor_agentd_collection_seconds_bucket{le="+Inf"}'] == 2
    assert found["monitor_agentd_last_sequence"] == 4
    assert found["monitor_agentd_spool_depth"] == 2 and found["monitor_agentd_spool_dropped_total"] == 2
    assert found["monitor_agentd_last_acked_sequence"] == 0
    assert found["monitor_agentd_spool_replayed_from_disk"] == 2
    assert found["monitor_agentd_spool_repaired_bytes"] == 4
    assert found["monitor_agentd_connected"] == 0 and found["monitor_agentd_connection_failures_total"] == 0
    assert found["monitor_agentd_backoff_seconds"] == 0 and found["monitor_agentd_backoff_attempt"] == 0
    assert found["monitor_agentd_commands_running"] == 0 and found["monitor_agentd_commands_executed_total"] == 0

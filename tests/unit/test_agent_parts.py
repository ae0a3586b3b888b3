"""Agent building blocks: backoff, spool, collectors."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import pytest

from monitor_agentd.backoff import Backoff, BackoffPolicy
from monitor_agentd.collectors.mock import MockCollector
from monitor_agentd.collectors.system import SystemCollector
from monitor_agentd.config import CollectionSection
from monitor_agentd.spool import Spool
from monitoring.v1 import monitoring_pb2 as pb


def test_backoff_grows_caps_and_jitters() -> None:
    top = Backoff(BackoffPolicy(initial=1, multiplier=2, maximum=10, jitter=1.0), rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    low = Backoff(BackoffPolicy(initial=1, multiplier=2, maximum=10, jitter=1.0), rand=lambda: 0.0)
    assert low.next_delay() == 0.0  # full jitter reaches zero
    half = Backoff(BackoffPolicy(initial=4, multiplier=2, maximum=60, jitter=0.5), rand=lambda: 0.0)
    assert half.next_delay() == 2.0
    top.reset()
    assert top.next_delay() == 1


def _record(seq: int) -> pb.MetricsData:
    return pb.MetricsData(agent_id="a", sequence=seq)


def _drain(spool: Spool) -> list[int]:
    out = []
    while (r := spool.next_to_send()) is not None:
        out.append(r.sequence)
    return out


def test_spool_sends_in_order_and_replays_unacked_after_rewind() -> None:
    spool = Spool(max_records=100)
    for s in range(1, 6):
        spool.add(_record(s))
    assert _drain(spool) == [1, 2, 3, 4, 5]
    assert spool.ack(1, 2) == 2
    spool.rewind()
    assert _drain(spool) == [3, 4, 5]
    assert spool.acked == 2 and len(spool) == 3


def test_spool_hold_stops_until_rewind() -> None:
    spool = Spool(max_records=100)
    for s in range(1, 4):
        spool.add(_record(s))
    assert spool.next_to_send().sequence == 1  # type: ignore[union-attr]
    spool.hold()
    assert spool.next_to_send() is None
    spool.rewind()
    assert _drain(spool) == [1, 2, 3]


def test_spool_bound_drops_oldest_and_counts() -> None:
    spool = Spool(max_records=3)
    for s in range(1, 6):
        spool.add(_record(s))
    assert spool.dropped == 2
    assert _drain(spool) == [3, 4, 5]


def test_mock_collector_is_deterministic() -> None:
    a, b = pb.MetricsData(), pb.MetricsData()
    MockCollector("agent-1").collect(a, 7)
    MockCollector("agent-1").collect(b, 7)
    assert a == b and 0 <= a.cpu.percent <= 100 and a.disks and a.network.interfaces
    c = pb.MetricsData()
    MockCollector("agent-2").collect(c, 7)
    assert c.cpu.percent != a.cpu.percent


Usage = namedtuple("Usage", "total used free percent")
Part = namedtuple("Part", "device mountpoint fstype")
IO = namedtuple("IO", "read_count write_count read_bytes write_bytes read_time write_time")
Net = namedtuple("Net", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")


def fake_psutil() -> SimpleNamespace:
    def disk_usage(path: str) -> Usage:
        if path == "/stale":
            raise OSError("stale handle")
        return Usage(100, 40, 60, 40.0)

    return SimpleNamespace(
        cpu_percent=lambda interval=None, percpu=False: [10.0, 30.0] if percpu else 20.0,
        getloadavg=lambda: (0.5, 0.4, 0.3),
        cpu_count=lambda logical=True: 2,
        virtual_memory=lambda: SimpleNamespace(total=8, available=4, used=3, free=1, percent=50.0),
        swap_memory=lambda: SimpleNamespace(total=2, used=1, free=1, percent=50.0),
        disk_partitions=lambda all=False: [
            Part("/dev/sda1", "/", "ext4"),
            Part("tmpfs", "/run", "tmpfs"),
            Part("srv:/x", "/stale", "nfs"),
        ],
        disk_usage=disk_usage,
        disk_io_counters=lambda perdisk=True: {"sda": IO(1, 2, 3, 4, 5, 6)},
        net_io_counters=lambda pernic=False: (
            {"eth0": Net(1, 2, 3, 4, 5, 6, 7, 8)} if pernic else Net(1, 2, 3, 4, 5, 6, 7, 8)
        ),
        boot_time=lambda: 0.0,
    )


def test_system_collector_reads_every_family() -> None:
    record = pb.MetricsData()
    SystemCollector(CollectionSection(), fake_psutil()).collect(record, 1)
    assert record.cpu.percent == 20.0 and list(record.cpu.per_core_percent) == [10.0, 30.0]
    assert record.cpu.load_1m == pytest.approx(0.5) and record.cpu.logical_cores == 2
    assert record.memory.percent == 50.0 and record.memory.swap_total_bytes == 2
    assert [d.mountpoint for d in record.disks] == ["/"]  # tmpfs ignored, stale mount skipped
    assert record.disk_io[0].device == "sda" and record.disk_io[0].write_time_ms == 6
    assert record.network.total.drops_out == 8 and record.network.interfaces[0].name == "eth0"
    assert record.uptime_seconds > 0

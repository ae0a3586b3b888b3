"""The psutil collector, on a fake psutil module."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import pytest

from monitor_agentd.collectors.system import SystemCollector
from monitor_agentd.config import CollectionSection
from monitoring.v1 import monitoring_pb2 as pb

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


def test_system_collector_honours_the_caps() -> None:
    record = pb.MetricsData()
    SystemCollector(CollectionSection(max_disks=0, max_interfaces=0), fake_psutil()).collect(record, 1)
    assert not record.disks and not record.disk_io and not record.network.interfaces
    assert record.network.total.bytes_sent == 1

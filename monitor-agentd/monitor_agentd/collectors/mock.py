"""Deterministic synthetic metrics: the same agent id and sequence always give the same record.

Used by the demo and the tests (``--mode mock``): values move smoothly like a real host so the
analysis consumer has something to look at, but nothing depends on the machine running it.
"""

from __future__ import annotations

import math
import zlib

from monitoring.v1 import monitoring_pb2 as pb

GIB = 1024**3


class MockCollector:
    """Synthetic host with 4 cores, 16 GiB, one disk and one interface."""

    name = "mock"

    def __init__(self, agent_id: str) -> None:
        # A stable per-agent phase so several mock agents do not move in lockstep.
        self._phase = (zlib.crc32(agent_id.encode()) % 1000) / 1000 * 2 * math.pi

    def collect(self, record: pb.MetricsData, sequence: int) -> None:
        """Fill ``record`` with the values of ``sequence`` (the same every time)."""
        t = sequence / 10 + self._phase
        cpu = 45 + 25 * math.sin(t) + 5 * math.sin(3.7 * t)
        record.cpu.percent = round(cpu, 2)
        record.cpu.per_core_percent.extend(round(min(100.0, max(0.0, cpu + 8 * math.sin(t + i))), 2) for i in range(4))
        record.cpu.load_1m, record.cpu.load_5m, record.cpu.load_15m = (
            round(cpu / 25, 2),
            round(cpu / 28, 2),
            round(cpu / 30, 2),
        )
        record.cpu.logical_cores = 4
        mem = 60 + 15 * math.sin(t / 3)
        m = record.memory
        m.total_bytes = 16 * GIB
        m.used_bytes = int(m.total_bytes * mem / 100)
        m.available_bytes = m.total_bytes - m.used_bytes
        m.free_bytes = m.available_bytes // 2
        m.percent = round(mem, 2)
        m.swap_total_bytes, m.swap_used_bytes = 2 * GIB, GIB // 8
        m.swap_free_bytes = m.swap_total_bytes - m.swap_used_bytes
        m.swap_percent = 6.25
        disk_pct = 40 + (sequence % 50) / 10
        record.disks.add(
            mountpoint="/",
            device="/dev/vda1",
            fstype="ext4",
            total_bytes=100 * GIB,
            used_bytes=int(100 * GIB * disk_pct / 100),
            free_bytes=int(100 * GIB * (1 - disk_pct / 100)),
            percent=round(disk_pct, 2),
        )
        record.disk_io.add(
            device="vda",
            read_count=1000 * sequence,
            write_count=700 * sequence,
            read_bytes=4096 * 1000 * sequence,
            write_bytes=4096 * 700 * sequence,
        )
        counters = pb.NetworkCounters(
            bytes_sent=150_000 * sequence,
            bytes_recv=420_000 * sequence,
            packets_sent=200 * sequence,
            packets_recv=500 * sequence,
        )
        record.network.total.CopyFrom(counters)
        record.network.interfaces.add(name="eth0", counters=counters)
        record.uptime_seconds = 86_400 + sequence * 10.0

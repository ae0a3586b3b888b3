"""Real host metrics from psutil (the module is passed in, so tests can hand a fake one)."""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any

from monitor_agentd.config import CollectionSection
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


class SystemCollector:
    """CPU, memory, per-filesystem usage, disk I/O, network (total and per interface), uptime."""

    name = "real"

    def __init__(self, cfg: CollectionSection, psutil: ModuleType | Any) -> None:
        self._cfg = cfg
        self._ps = psutil
        # cpu_percent() measures since the previous call: prime it so the first record is meaningful.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._boot_time = psutil.boot_time()

    def collect(self, record: pb.MetricsData, sequence: int) -> None:
        """Fill ``record`` with this host's current figures."""
        ps = self._ps
        cpu = record.cpu
        cpu.percent = ps.cpu_percent(interval=None)
        cpu.per_core_percent.extend(ps.cpu_percent(interval=None, percpu=True))
        cpu.load_1m, cpu.load_5m, cpu.load_15m = ps.getloadavg()
        cpu.logical_cores = ps.cpu_count(logical=True) or 0
        self._memory(record.memory)
        self._disks(record)
        self._network(record.network)
        record.uptime_seconds = max(0.0, time.time() - self._boot_time)

    def _memory(self, m: pb.MemoryMetrics) -> None:
        vm, sw = self._ps.virtual_memory(), self._ps.swap_memory()
        m.total_bytes, m.available_bytes, m.used_bytes, m.free_bytes = vm.total, vm.available, vm.used, vm.free
        m.percent = vm.percent
        m.swap_total_bytes, m.swap_used_bytes, m.swap_free_bytes = sw.total, sw.used, sw.free
        m.swap_percent = sw.percent

    def _disks(self, record: pb.MetricsData) -> None:
        seen: set[str] = set()
        for part in self._ps.disk_partitions(all=False):
            if len(record.disks) >= self._cfg.max_disks:
                break
            if part.fstype in self._cfg.ignore_fstypes or part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = self._ps.disk_usage(part.mountpoint)
            except OSError as exc:  # e.g. a stale network mount; skip it this round
                log.debug("disk_usage(%s) failed: %s", part.mountpoint, exc)
                continue
            record.disks.add(
                mountpoint=part.mountpoint,
                device=part.device,
                fstype=part.fstype,
                total_bytes=usage.total,
                used_bytes=usage.used,
                free_bytes=usage.free,
                percent=usage.percent,
            )
        io = self._ps.disk_io_counters(perdisk=True) or {}
        for name, c in list(io.items())[: self._cfg.max_disks]:
            record.disk_io.add(
                device=name,
                read_count=c.read_count,
                write_count=c.write_count,
                read_bytes=c.read_bytes,
                write_bytes=c.write_bytes,
                read_time_ms=c.read_time,
                write_time_ms=c.write_time,
            )

    def _network(self, net: pb.NetworkMetrics) -> None:
        total = self._ps.net_io_counters(pernic=False)
        if total is not None:
            _fill(net.total, total)
        per = self._ps.net_io_counters(pernic=True) or {}
        for name, c in list(per.items())[: self._cfg.max_interfaces]:
            _fill(net.interfaces.add(name=name).counters, c)


def _fill(out: pb.NetworkCounters, c: Any) -> None:
    out.bytes_sent, out.bytes_recv, out.packets_sent, out.packets_recv = (
        c.bytes_sent,
        c.bytes_recv,
        c.packets_sent,
        c.packets_recv,
    )
    out.errors_in, out.errors_out, out.drops_in, out.drops_out = c.errin, c.errout, c.dropin, c.dropout

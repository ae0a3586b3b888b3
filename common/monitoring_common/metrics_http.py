"""Prometheus self-metrics for both daemons: the HTTP endpoint and a histogram cheap enough for
the per-record path (the config section is :class:`monitoring_common.sections.MetricsSection`).

Metrics are computed when scraped (a custom collector reads the daemon's own counters), so
serving them costs nothing per record; the endpoint is prometheus-client's HTTP server thread.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from monitoring_common.config_loader import split_hostport

log = logging.getLogger(__name__)


class LatencyHistogram:
    """Cumulative-bucket histogram for one writer thread: ``observe`` is a bisect and two adds."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = list(buckets)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=total)


class _ProcessCollector(ProcessCollector):
    """prometheus-client's process_* family. It reads the boot time from /proc/stat, which the
    units hide (ProcSubset=pid) -- and then reports nothing; CLOCK_BOOTTIME gives the same."""

    def _boot_time(self) -> float:
        try:
            return float(super()._boot_time())  # type: ignore[no-untyped-call]
        except OSError:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class _Callback(Collector):
    def __init__(self, collect: Any) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        return self._collect()  # type: ignore[no-any-return]


class MetricsEndpoint:
    """The /metrics HTTP server of one daemon; ``collect`` yields metric families at scrape time."""

    def __init__(self, listen: str, collect: Any) -> None:
        self.listen = listen
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Callback(collect))
        # The standard process_* (CPU, RSS, open files) and python_gc_* families as well.
        _ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        """Bind and serve; raises OSError naming the address if it cannot listen."""
        host, port = split_hostport("listen", self.listen)
        try:
            self._server, self._thread = start_http_server(port, addr=host.strip("[]"), registry=self.registry)
        except OSError as exc:
            raise OSError(f"metrics endpoint cannot listen on {self.listen}: {exc.strerror or exc}") from None
        self.port = self._server.server_port
        log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

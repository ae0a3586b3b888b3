"""The collection schedule: one record per interval, on fixed slots, into the outbound queue.

Collection never waits for the connection (records are spooled while disconnected); it only gives
the first connection up to one interval, so a healthy start streams from record #1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from monitor_agentd.collectors import Collector
from monitor_agentd.outbound import Outbound
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.metrics_http import LatencyHistogram

log = logging.getLogger(__name__)

#: Buckets of the collect-seconds histogram (monitor_agentd_collection_seconds).
COLLECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Schedule:
    """Collects on a fixed schedule; ``collect_now`` and ``set_interval`` serve the built-ins."""

    def __init__(
        self,
        agent_id: str,
        hostname: str,
        collector: Collector,
        outbound: Outbound,
        connected: asyncio.Event,
        *,
        interval: float,
        sequence: int = 0,
        labels: Mapping[str, str] = MappingProxyType({}),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agent_id = agent_id
        self._hostname = hostname
        self._collector = collector
        self._outbound = outbound
        self._connected = connected
        self._clock = clock
        self._interval_changed = asyncio.Event()
        #: Labels attached to every record (a reload may change them).
        self.labels = labels
        self._interval = interval
        self._sequence = sequence
        #: Records collected since start.
        self.collected = 0
        #: Time to collect one record.
        self.collect_seconds = LatencyHistogram(COLLECT_BUCKETS)
        #: When the last collection finished (``clock`` time).
        self.last_collect = clock()

    @property
    def interval(self) -> float:
        """Seconds between two collections."""
        return self._interval

    @property
    def sequence(self) -> int:
        """Sequence number of the newest record (it continues across restarts)."""
        return self._sequence

    def healthy(self) -> bool:
        """Collection keeps happening: the last one is less than three intervals (or 30 s) ago."""
        return self._clock() - self.last_collect < max(3 * self._interval, 30.0)

    async def run(self, iterations: int = 0) -> None:
        """Collect every interval; returns after ``iterations`` collections (0: runs until cancelled)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=self._interval)
        last = self._clock()
        for i in itertools.count(1):
            self.collect_now()
            if iterations and i >= iterations:
                log.info("✓ Completed %d iterations. Stopping stream.", iterations)
                return
            # Sleep to the next slot of a fixed schedule (collection time adds no drift); a
            # set-interval command re-plans from the last collection.
            while True:
                self._interval_changed.clear()
                delay = max(0.0, last + self._interval - self._clock())
                try:
                    await asyncio.wait_for(self._interval_changed.wait(), timeout=delay)
                except TimeoutError:
                    break
            last += self._interval
            if self._clock() - last > self._interval:  # fell behind (suspend, overload): no burst
                last = self._clock()

    def collect_now(self) -> int:
        """Collect one record into the outbound queue (also the ``collect`` command); returns its sequence."""
        started = self._clock()
        record = self._collect()
        self.last_collect = self._clock()
        self.collect_seconds.observe(self.last_collect - started)
        self.collected += 1
        connected = self._connected.is_set()
        self._outbound.add_record(record)
        log.info(
            "[%d] %s metrics:\n  CPU: %.2f%%\n  Memory: %.2f%%",
            record.sequence,
            "Streamed" if connected else "Spooled (not connected)",
            record.cpu.percent,
            record.memory.percent,
        )
        return record.sequence

    def set_interval(self, seconds: float) -> float:
        """Change the collection interval now (``set-interval``, reload); returns the previous one."""
        old, self._interval = self._interval, seconds
        self._interval_changed.set()
        log.info("Collection interval changed from %gs to %gs", old, seconds)
        return old

    def _collect(self) -> pb.MetricsData:
        self._sequence += 1
        record = pb.MetricsData(
            agent_id=self._agent_id, sequence=self._sequence, hostname=self._hostname, source=self._collector.name
        )
        record.collected_at.GetCurrentTime()
        record.labels.update(self.labels)
        self._collector.collect(record, self._sequence)
        return record

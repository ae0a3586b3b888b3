"""monitor-agentd's optional Prometheus metrics (``metrics.listen``), read at scrape time.

:class:`AgentStats` names the parts each figure is read from; the protocols below say exactly
which figures those are, so this module depends on no part's class (and not on the agent).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitoring_common.metrics_http import LatencyHistogram, MetricsEndpoint


class CollectionStats(Protocol):
    """Figures of the collection schedule."""

    @property
    def collect_seconds(self) -> LatencyHistogram:
        """Time to collect one record."""
        ...

    @property
    def collected(self) -> int:
        """Records collected since start."""
        ...

    @property
    def sequence(self) -> int:
        """Sequence number of the newest record."""
        ...


class SpoolStats(Sized, Protocol):
    """Figures of the spool (``len`` is its depth)."""

    @property
    def dropped(self) -> int:
        """Records dropped (full spool, permanent refusals)."""
        ...

    @property
    def last_acked(self) -> int:
        """Highest acknowledged sequence."""
        ...

    @property
    def replayed_from_disk(self) -> int:
        """Unacknowledged records found on disk at start."""
        ...

    @property
    def repaired_bytes(self) -> int:
        """Bytes of torn or corrupt tail cut off at start."""
        ...


class ConnectionStats(Protocol):
    """Figures of the reconnect loop."""

    @property
    def connected(self) -> bool:
        """True while a stream is open."""
        ...

    @property
    def connection_failures(self) -> int:
        """Connections that failed or ended without a goodbye."""
        ...

    @property
    def backoff_delay(self) -> float:
        """Delay before the next connection attempt."""
        ...

    @property
    def backoff_attempt(self) -> int:
        """Failed attempts since the last healthy stream."""
        ...


class CommandStats(Protocol):
    """Figures of the command runner."""

    @property
    def running(self) -> int:
        """Commands executing now."""
        ...

    @property
    def executed(self) -> int:
        """Programs run to completion (or timeout) since start."""
        ...


@dataclass(frozen=True)
class AgentStats:
    """Where each exported figure comes from."""

    collection: CollectionStats
    spool: SpoolStats
    connection: ConnectionStats
    commands: CommandStats


def endpoint(listen: str, stats: AgentStats) -> MetricsEndpoint:
    """The /metrics endpoint on ``listen`` (not started yet) reporting ``stats``."""
    return MetricsEndpoint(listen, lambda: collect(stats))


def collect(stats: AgentStats) -> Iterator[Metric]:
    """The agent's metric families, computed now."""
    collection, spool, connection = stats.collection, stats.spool, stats.connection
    yield collection.collect_seconds.family("monitor_agentd_collection_seconds", "Time to collect one record.")
    yield CounterMetricFamily(
        "monitor_agentd_records_collected", "Records collected since start.", collection.collected
    )
    yield GaugeMetricFamily(
        "monitor_agentd_last_sequence", "Sequence number of the newest record.", collection.sequence
    )
    yield GaugeMetricFamily("monitor_agentd_spool_depth", "Records waiting for an acknowledgment.", len(spool))
    yield CounterMetricFamily(
        "monitor_agentd_spool_dropped", "Records dropped from the full spool (oldest first).", spool.dropped
    )
    yield GaugeMetricFamily("monitor_agentd_last_acked_sequence", "Highest acknowledged sequence.", spool.last_acked)
    yield GaugeMetricFamily(
        "monitor_agentd_spool_replayed_from_disk",
        "Unacknowledged records found in the on-disk spool at start (sent before new ones).",
        spool.replayed_from_disk,
    )
    yield GaugeMetricFamily(
        "monitor_agentd_spool_repaired_bytes",
        "Bytes of torn or corrupt spool tail cut off at start (only after a power loss).",
        spool.repaired_bytes,
    )
    yield GaugeMetricFamily(
        "monitor_agentd_connected", "1 while a stream to a server is open.", int(connection.connected)
    )
    yield CounterMetricFamily(
        "monitor_agentd_connection_failures",
        "Connections that failed or ended without a goodbye.",
        connection.connection_failures,
    )
    yield GaugeMetricFamily(
        "monitor_agentd_backoff_seconds",
        "Delay before the next connection attempt (0 while connected).",
        connection.backoff_delay,
    )
    yield GaugeMetricFamily(
        "monitor_agentd_backoff_attempt", "Failed attempts since the last healthy stream.", connection.backoff_attempt
    )
    yield GaugeMetricFamily("monitor_agentd_commands_running", "Commands executing now.", stats.commands.running)
    yield CounterMetricFamily(
        "monitor_agentd_commands_executed",
        "Programs run to completion or timeout since start (built-ins not counted).",
        stats.commands.executed,
    )

"""monitor-agentd's optional Prometheus metrics (``metrics.listen``), read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitoring_common.metrics_http import MetricsEndpoint

if TYPE_CHECKING:
    from monitor_agentd.app import Agent

COLLECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def endpoint(agent: Agent) -> MetricsEndpoint:
    return MetricsEndpoint(agent.cfg.metrics.listen, lambda: collect(agent))


def collect(agent: Agent) -> Iterator[Metric]:
    spool, link = agent.spool, agent.link
    yield agent.collect_seconds.family("monitor_agentd_collection_seconds", "Time to collect one record.")
    yield CounterMetricFamily("monitor_agentd_records_collected", "Records collected since start.", agent.collected)
    yield GaugeMetricFamily("monitor_agentd_last_sequence", "Sequence number of the newest record.", agent.sequence)
    yield GaugeMetricFamily("monitor_agentd_spool_depth", "Records waiting for an acknowledgment.", len(spool))
    yield CounterMetricFamily(
        "monitor_agentd_spool_dropped", "Records dropped from the full spool (oldest first).", spool.dropped
    )
    yield GaugeMetricFamily("monitor_agentd_last_acked_sequence", "Highest acknowledged sequence.", spool.last_acked)
    yield GaugeMetricFamily(
        "monitor_agentd_connected", "1 while a stream to a server is open.", int(link.connected.is_set())
    )
    yield CounterMetricFamily(
        "monitor_agentd_connection_failures",
        "Connections that failed or ended without a goodbye.",
        agent.connection_failures,
    )
    yield GaugeMetricFamily(
        "monitor_agentd_backoff_seconds",
        "Delay before the next connection attempt (0 while connected).",
        agent.backoff_delay,
    )
    yield GaugeMetricFamily(
        "monitor_agentd_backoff_attempt", "Failed attempts since the last healthy stream.", agent.backoff.attempt
    )
    yield GaugeMetricFamily("monitor_agentd_commands_running", "Commands executing now.", agent.commands.running)

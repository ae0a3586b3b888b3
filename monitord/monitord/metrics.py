"""monitord's Prometheus metrics, read from its own counters at scrape time (docs/operations.md).

The collector is given its sources (the counters of the streams, sessions, router and the Kafka
bridge), so tests hand it plain objects. Nothing here runs per record except the Kafka
delivery-latency histogram, which the poll thread fills from the delivery reports it already
handles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitord.inflight import InflightBudget
from monitord.kafka_state import KafkaStatus
from monitord.stats import AUTH_FAILURE_REASONS, AuthStats, IntakeStats, RouterStats, ServerStats, SessionStats
from monitoring_common.metrics_http import LatencyHistogram, MetricsEndpoint


class KafkaGauges(Protocol):
    """What /metrics shows of the producer (:class:`monitord.kafka_bridge.KafkaProducerBridge`)."""

    def kafka_status(self) -> KafkaStatus: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def delivery_latency(self) -> LatencyHistogram: ...


@dataclass(frozen=True)
class Sources:
    """Everything a scrape reads."""

    server: ServerStats
    sessions: SessionStats
    router: RouterStats
    intake: IntakeStats
    inflight: InflightBudget
    kafka: KafkaGauges


def endpoint(listen: str, sources: Sources) -> MetricsEndpoint:
    return MetricsEndpoint(listen, lambda: collect(sources))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def collect(sources: Sources) -> Iterator[Metric]:
    """Every metric family, from a snapshot of the server's counters."""
    stats, sessions, router, kafka = sources.server, sources.sessions, sources.router, sources.kafka
    yield _gauge("monitord_connected_agents", "Agent streams open now.", sessions.connected)
    yield _counter("monitord_streams_opened", "Agent streams accepted since start.", sessions.opened)
    yield _counter("monitord_streams_closed", "Agent streams ended since start (any reason).", sessions.closed)
    yield _counter("monitord_records_received", "Metrics records received from agents.", stats.received)
    yield _counter("monitord_records_forwarded", "Records Kafka confirmed (then acknowledged).", stats.forwarded)
    yield _counter("monitord_records_failed", "Records Kafka did not take (negative ack sent).", stats.failed)
    yield _counter("monitord_records_rejected", "Messages refused by the limits (negative ack).", stats.rejected)
    yield _counter("monitord_acks_sent", "Ack messages written (one may cover many records).", stats.acks)
    yield _counter("monitord_heartbeats_received", "Agent heartbeats.", stats.heartbeats)
    yield _gauge("monitord_inflight_records", "Records handed to Kafka, not yet acknowledged.", sources.inflight.in_use)
    yield _gauge("monitord_kafka_queue_depth", "Records in librdkafka's local queue.", kafka.queue_depth)
    yield from _kafka_state(kafka.kafka_status())
    yield kafka.delivery_latency.family(
        "monitord_kafka_delivery_seconds", "From handing a record to the producer to Kafka's confirmation."
    )
    yield _counter("monitord_commands_pushed", "Commands written to agent streams.", router.pushed)
    yield _gauge("monitord_commands_held", "Commands waiting for their agent to connect.", router.held)
    yield _gauge(
        "monitord_commands_partitions_assigned",
        "Partitions the commands consumer reads, set once its start-up replay is done (0 before, or commands off).",
        sources.intake.partitions_assigned,
    )
    yield _gauge(
        "monitord_commands_replayed",
        "Records the start-up replay of commands and command-responses read.",
        sources.intake.replayed,
    )
    yield _gauge("monitord_commands_answers_owed", "EXPIRED/INVALID answers owed, not yet read back.", router.owed)
    yield _gauge(
        "monitord_commands_partitions_owned",
        "Partitions of the commands topic this instance writes monitord's own answers for.",
        router.partitions_owned,
    )
    responses = CounterMetricFamily(
        "monitord_command_responses",
        "Command responses written to Kafka, by status and by who reported them.",
        labels=["status", "source"],
    )
    for status, count in sorted(stats.responses_by_status.items()):
        responses.add_metric([status, "agent"], count)
    for status, count in sorted(router.answered_by_status.items()):
        responses.add_metric([status, "monitord"], count)
    yield responses
    yield _gauge(
        "monitord_agent_spool_dropped",
        "Records agents report having dropped from a full spool (sum of the latest reports).",
        sum(list(stats.agent_drops.values())),
    )
    yield from _auth(stats.auth)


def _kafka_state(status: KafkaStatus) -> Iterator[Metric]:
    yield _gauge(
        "monitord_kafka_state",
        "Kafka as monitord sees it: 2 up, 1 degraded, 0 down (docs/operations.md).",
        status.state,
    )
    yield _gauge("monitord_kafka_up", "1 unless Kafka is down (degraded counts as up).", int(status.up))
    yield _gauge(
        "monitord_kafka_unconfirmed_seconds",
        "How long records have waited without any confirmation (0 while confirmations flow or none wait).",
        status.unconfirmed_seconds,
    )
    report = status.report
    yield _gauge(
        "monitord_kafka_partitions",
        "Partitions of the topics monitord writes, in the latest cluster metadata (0 before the first).",
        report.partitions if report is not None else 0,
    )
    impaired = GaugeMetricFamily(
        "monitord_kafka_partitions_impaired",
        "Of those, partitions without leader, under min.insync.replicas, or with fewer in-sync replicas than replicas.",
        labels=["problem"],
    )
    if report is not None:
        impaired.add_metric(["no_leader"], report.no_leader)
        impaired.add_metric(["under_min_isr"], report.under_min_isr)
        impaired.add_metric(["under_replicated"], report.under_replicated)
    yield impaired


def _auth(auth: AuthStats) -> Iterator[Metric]:
    failures = CounterMetricFamily(
        "monitord_auth_failures",
        "Calls refused after their credential was checked, by reason.",
        labels=["reason"],
    )
    for reason in AUTH_FAILURE_REASONS:
        failures.add_metric([reason], auth.failures_by_reason.get(reason, 0))
    yield failures
    yield _counter(
        "monitord_auth_throttled",
        "Calls whose token was refused unchecked: their peer host or agent id was over its failure budget.",
        auth.throttled,
    )
    yield _gauge(
        "monitord_auth_tracked_peers",
        "Peer hosts whose recent authentication failures are remembered.",
        auth.tracked_peers,
    )

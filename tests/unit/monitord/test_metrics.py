"""/metrics families, computed from the sources the collector is handed (plain objects here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.core import Metric

from monitord import metrics
from monitord.inflight import InflightBudget
from monitord.kafka_bridge import DELIVERY_BUCKETS
from monitord.kafka_state import ClusterReport, KafkaState, KafkaStatus
from monitord.stats import IntakeStats, RouterStats, ServerStats, SessionStats
from monitoring_common.metrics_http import LatencyHistogram

DOWN = KafkaStatus(KafkaState.DOWN, "no confirmation for 12 s", 12.5, ClusterReport(6, 0, 6, 6))


@dataclass
class Kafka:
    status: KafkaStatus = DOWN
    queue_depth: int = 12
    delivery_latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(DELIVERY_BUCKETS))

    def kafka_status(self) -> KafkaStatus:
        return self.status


def samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_every_family_reads_its_source() -> None:
    server = ServerStats(received=5, forwarded=4, failed=1, rejected=2, acks=3, heartbeats=7)
    server.note_response("SUCCEEDED")
    server.note_response("SUCCEEDED")
    server.note_agent_drops("web-1", 3)
    server.note_agent_drops("web-1", 2)  # the latest report never lowers the highest
    server.note_agent_drops("web-2", 4)
    for _ in range(3):
        server.auth.note_failure("unknown_token")
    server.auth.throttled, server.auth.tracked_peers = 40, 2
    router = RouterStats(pushed=6, held=2, answered_by_status={"EXPIRED": 1})
    kafka = Kafka()
    kafka.delivery_latency.observe(0.003)
    sources = metrics.Sources(
        server=server,
        sessions=SessionStats(opened=9, closed=8, connected=1),
        router=router,
        intake=IntakeStats(partitions_assigned=6),
        inflight=InflightBudget(10),
        kafka=kafka,
    )
    got = samples(list(metrics.collect(sources)))
    assert got[("monitord_connected_agents", ())] == 1
    assert got[("monitord_streams_opened_total", ())] == 9
    assert got[("monitord_streams_closed_total", ())] == 8
    assert got[("monitord_records_received_total", ())] == 5
    assert got[("monitord_records_forwarded_total", ())] == 4
    assert got[("monitord_records_failed_total", ())] == 1
    assert got[("monitord_records_rejected_total", ())] == 2
    assert got[("monitord_acks_sent_total", ())] == 3
    assert got[("monitord_heartbeats_received_total", ())] == 7
    assert got[("monitord_inflight_records", ())] == 0
    assert got[("monitord_kafka_queue_depth", ())] == 12 and got[("monitord_kafka_up", ())] == 0
    assert got[("monitord_kafka_delivery_seconds_count", ())] == 1
    assert got[("monitord_kafka_state", ())] == 0 and got[("monitord_kafka_unconfirmed_seconds", ())] == 12.5
    assert got[("monitord_kafka_partitions", ())] == 6
    assert got[("monitord_kafka_partitions_impaired", (("problem", "under_min_isr"),))] == 6
    assert got[("monitord_kafka_partitions_impaired", (("problem", "no_leader"),))] == 0
    assert got[("monitord_commands_partitions_assigned", ())] == 6
    assert got[("monitord_commands_pushed_total", ())] == 6 and got[("monitord_commands_held", ())] == 2
    assert got[("monitord_command_responses_total", (("source", "agent"), ("status", "SUCCEEDED")))] == 2
    assert got[("monitord_command_responses_total", (("source", "monitord"), ("status", "EXPIRED")))] == 1
    assert got[("monitord_agent_spool_dropped", ())] == 7
    assert got[("monitord_auth_failures_total", (("reason", "unknown_token"),))] == 3
    assert got[("monitord_auth_failures_total", (("reason", "certificate_mismatch"),))] == 0  # every reason shown
    assert got[("monitord_auth_throttled_total", ())] == 40
    assert got[("monitord_auth_tracked_peers", ())] == 2


def test_endpoint_serves_the_collector() -> None:
    sources = metrics.Sources(ServerStats(), SessionStats(), RouterStats(), IntakeStats(), InflightBudget(1), Kafka())
    endpoint = metrics.endpoint("127.0.0.1:9", sources)
    assert endpoint.listen == "127.0.0.1:9"


def test_the_kafka_state_gauges_in_each_state() -> None:
    def kafka_samples(status: KafkaStatus) -> dict[str, float]:
        sources = metrics.Sources(
            ServerStats(), SessionStats(), RouterStats(), IntakeStats(), InflightBudget(1), Kafka(status)
        )
        got = samples(list(metrics.collect(sources)))
        return {
            name: value for (name, labels), value in got.items() if name.startswith("monitord_kafka_") and not labels
        }

    up = kafka_samples(KafkaStatus(KafkaState.UP, "", 0.0, None))
    assert up["monitord_kafka_state"] == 2 and up["monitord_kafka_up"] == 1 and up["monitord_kafka_partitions"] == 0
    degraded = kafka_samples(KafkaStatus(KafkaState.DEGRADED, "2 partitions without leader", 0.0, ClusterReport(6, 2)))
    assert degraded["monitord_kafka_state"] == 1 and degraded["monitord_kafka_up"] == 1
    down = kafka_samples(DOWN)
    assert down["monitord_kafka_state"] == 0 and down["monitord_kafka_up"] == 0

"""/metrics families, computed from the sources the collector is handed (plain objects here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.core import Metric

from monitord import metrics
from monitord.inflight import InflightBudget
from monitord.kafka_bridge import DELIVERY_BUCKETS
from monitord.stats import IntakeStats, RouterStats, ServerStats, SessionStats
from monitoring_common.metrics_http import LatencyHistogram


@dataclass
class Kafka:
    kafka_up: bool = False
    queue_depth: int = 12
    delivery_latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(DELIVERY_BUCKETS))


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

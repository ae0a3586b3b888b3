"""The metadata watch: partitions without leader or under min ISR counted from confluent-kafka's
metadata classes, min.insync.replicas read now and then, a failed request reported as None."""

from __future__ import annotations

import logging
import threading

import pytest

from monitord import kafka_cluster
from monitord.config import KafkaSection
from monitord.kafka_cluster import ClusterWatch, report_from
from monitord.kafka_state import ClusterReport
from monitoring_common.config_loader import InvalidField
from monitoring_testsupport.fakes.kafka_admin import AdminFactory, FakeAdmin, healthy
from monitoring_testsupport.fakes.waiting import WAIT

TOPICS = ("monitoring-data", "agent-status", "command-responses")


def admin(**partitions: object) -> FakeAdmin:
    return FakeAdmin({}, {t: healthy() for t in TOPICS} | partitions)  # type: ignore[arg-type]


def watch(fake: FakeAdmin, reports: list[ClusterReport | None] | None = None) -> ClusterWatch:
    out = reports if reports is not None else []
    return ClusterWatch(fake, TOPICS, interval=1, deliver=out.append)


def test_a_healthy_cluster_has_no_problems() -> None:
    report = watch(admin()).probe()
    assert report == ClusterReport(partitions=9) and report.healthy and report.problems() == ""


def test_problems_are_counted_per_partition() -> None:
    fake = admin()
    fake.partitions["monitoring-data"] = [(-1, [1, 2, 3], []), (2, [1, 2, 3], [2]), (3, [1, 2, 3], [2, 3])]
    fake.partitions["agent-status"] = [(-1, [1, 2, 3], [1])]
    del fake.partitions["command-responses"]
    report = watch(fake).probe()
    assert report == ClusterReport(
        partitions=4, no_leader=2, under_min_isr=3, under_replicated=4, missing_topics=("command-responses",)
    )
    assert report.problems() == (
        "2 partitions without leader, 3 partitions under min ISR, topic missing: command-responses"
    )


def test_min_isr_comes_from_each_topic_and_is_read_again_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_cluster, "MIN_ISR_EVERY", 3)
    fake = admin(**{"monitoring-data": [(1, [1, 2, 3], [1, 2])]})
    w = watch(fake)
    assert w.probe() == ClusterReport(partitions=7, under_replicated=1)  # ISR 2 = min ISR 2
    fake.min_isr["monitoring-data"] = 3
    assert w.probe() == ClusterReport(partitions=7, under_replicated=1)  # not read again yet
    w.probe()
    assert w.probe() == ClusterReport(partitions=7, under_min_isr=1, under_replicated=1)
    assert fake.config_requests == 2 and fake.metadata_requests == 4
    fake.min_isr["monitoring-data"] = 2  # lowered again: read at once while partitions are under it
    assert w.probe() == ClusterReport(partitions=7, under_replicated=1)
    assert fake.config_requests == 3


def test_without_configs_only_an_empty_isr_is_under_min(caplog: pytest.LogCaptureFixture) -> None:
    fake = admin(**{"monitoring-data": [(1, [1, 2, 3], [1]), (-1, [1, 2, 3], [])]})
    fake.configs_denied = True
    w = watch(fake)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert w.probe() == ClusterReport(partitions=8, no_leader=1, under_min_isr=1, under_replicated=2)
    assert caplog.messages == [
        "Cannot read min.insync.replicas of the topics (KafkaError{code=TOPIC_AUTHORIZATION_FAILED,val=29,"
        'str="denied"}): only partitions without leader count'
    ]


def test_min_isr_above_the_replica_count_counts_as_the_replica_count() -> None:
    fake = admin(**{"monitoring-data": [(1, [1], [1]), (1, [1, 2], [1])]})
    fake.min_isr["monitoring-data"] = 2
    assert watch(fake).probe() == ClusterReport(partitions=8, under_min_isr=1, under_replicated=1)


def test_a_failed_request_is_none() -> None:
    fake = admin()
    fake.unreachable = True
    assert watch(fake).probe() is None


def test_the_thread_delivers_reports_until_stopped() -> None:
    fake = admin()
    reports: list[ClusterReport | None] = []
    delivered = threading.Event()

    def deliver(report: ClusterReport | None) -> None:  # on the watch's thread
        reports.append(report)
        delivered.set()

    w = ClusterWatch(fake, TOPICS, interval=1, deliver=deliver)
    w.start()
    assert delivered.wait(WAIT)
    thread = w.stop()
    assert thread is not None and thread.name == "kafka-metadata"
    thread.join(WAIT)
    assert not thread.is_alive() and reports[0] == ClusterReport(partitions=9)


def test_of_builds_the_admin_client_from_the_kafka_section() -> None:
    factory = AdminFactory({t: healthy() for t in TOPICS})
    cfg = KafkaSection(bootstrap_servers="b1:9092,b2:9092", client={"security.protocol": "SSL"})
    w = ClusterWatch.of(cfg, factory, "monitord-x", lambda _r: None)
    conf = factory.admin.conf
    assert conf["bootstrap.servers"] == "b1:9092,b2:9092" and conf["security.protocol"] == "SSL"
    assert conf["client.id"] == "monitord-x-metadata" and conf["logger"].name == "monitord.librdkafka.metadata"
    assert w.probe() == ClusterReport(partitions=9)
    assert report_from(factory.admin.list_topics(), ["nope"], {}) == ClusterReport(missing_topics=("nope",))


def test_the_interval_must_be_shorter_than_down_after() -> None:
    with pytest.raises(InvalidField, match="must be shorter than down_after_seconds"):
        KafkaSection(down_after_seconds=5, metadata_interval_seconds=5)

"""Fixtures shared by all tests; the Kafka broker is real and started here when needed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitoring_testsupport import KafkaBroker, KafkaCluster, free_port, procs


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    """No test leaves a daemon behind, whether it passed or failed."""
    yield
    while procs.STARTED:
        procs.STARTED.pop().stop(timeout=5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test is a failed test: in CI nothing may silently not run."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"test was skipped, which this suite treats as a failure: {report.longrepr}"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The shared broker: $KAFKA_BOOTSTRAP if set, else a fresh one started by scripts/kafka.sh."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        broker = KafkaBroker(port=0, data_dir=None, external=external)
        broker.start()  # creates the topics on that cluster
        yield broker
        return
    broker = KafkaBroker(port=free_port(), data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 3-node cluster (RF 3, min.insync.replicas 2) by scripts/kafka-cluster.sh, started only
    for the tests that ask for it; tests may kill, stop and start its nodes."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own (not started yet), for tests that stop and start Kafka."""
    broker = KafkaBroker(port=free_port(), data_dir=tmp_path / "private-kafka")
    try:
        yield broker
    finally:
        broker.stop()

"""The fault matrix: one cell per fault — a mixed workload through real monitord and real Kafka,
one fault, then the delivery promises checked over the history read back from Kafka.

The whole table is printed at the end of the session (and written as JSON to $FAULT_MATRIX_JSON
if set). ``python -m monitoring_testsupport.matrix --soak MINUTES --seed S`` runs random cells.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitoring_testsupport import KafkaBroker, KafkaCluster
from monitoring_testsupport.matrix import FAULTS, CellResult, render, run_cell
from monitoring_testsupport.matrix.table import write_json

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class MatrixReport:
    """Collects the cells' results; prints the table in pytest's terminal summary."""

    def __init__(self) -> None:
        self.results: list[CellResult] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        terminalreporter.section("fault matrix")
        for line in render(self.results).splitlines():
            terminalreporter.write_line(line)
        target = os.environ.get("FAULT_MATRIX_JSON")
        if target:
            write_json(self.results, Path(target))


@pytest.fixture(scope="session")
def matrix_report(request: pytest.FixtureRequest) -> Iterator[MatrixReport]:
    report = MatrixReport()
    request.config.pluginmanager.register(report, "fault-matrix-report")
    yield report


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_fault_matrix_cell(
    fault_name: str, matrix_report: MatrixReport, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fault = FAULTS[fault_name]
    broker: KafkaBroker | None = None
    cluster: KafkaCluster | None = None
    if fault.private_kafka:
        broker = request.getfixturevalue("private_kafka")
        broker.start()
        bootstrap = broker.bootstrap
    elif fault.cluster:
        cluster = request.getfixturevalue("kafka_cluster")
        cluster.start()  # a node a failed cell left down comes back
        cluster.wait_in_sync(("monitoring-data", "command-responses", "commands", "agent-status"))
        bootstrap = cluster.bootstrap
    else:
        bootstrap = request.getfixturevalue("kafka").bootstrap
    result = run_cell(fault, bootstrap, tmp_path, broker=broker, cluster=cluster)
    matrix_report.results.append(result)
    print(render([result], title=fault_name))
    assert result.ok, f"{fault.description}: " + "; ".join(result.failed())

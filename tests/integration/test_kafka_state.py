"""The Kafka state against a real broker: stopped while agents stream, monitord says DOWN once
confirmations have stopped for ``kafka.down_after_seconds`` (not after a delivery timeout), health
turns NOT_SERVING, and after the restart it is up again -- one log line each way, no flapping.

The degraded state (partitions without leader / under min ISR) needs a cluster: a single broker
caps ``min.insync.replicas`` at its one replica (checked here: it stays up). It is checked with fakes
in tests/unit/monitord/test_kafka_bridge.py and test_app.py until the cluster tests run it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # no __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from grpc_health.v1 import health_pb2

from monitoring_testsupport import (
    KafkaBroker,
    Proc,
    health_status,
    loss_report,
    read_records,
    sequences,
    start_agent,
    start_fleet,
    start_monitord,
    unique,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DOWN_AFTER = 5.0
#: The tick (1 s), a metadata interval and a loaded CI machine.
SLACK = 10.0


def fleet_result(fleet: Proc, timeout: float) -> dict[str, Any]:
    assert fleet.wait(timeout) == 0, fleet.text()[-3000:]
    text = fleet.text()
    return json.loads(text[text.index('{"agents"') :])["agents"]  # type: ignore[no-any-return]


def wait_health(address: str, wanted: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (status := health_status(address)) != wanted:
        assert time.monotonic() < deadline, f"health still {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
        time.sleep(0.2)


def set_min_isr(bootstrap: str, topic: str, value: int) -> None:
    entry = ConfigEntry("min.insync.replicas", str(value), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the answer: destroying it cancels
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def test_stopped_broker_is_down_after_down_after_seconds_and_up_once_back(
    private_kafka: KafkaBroker, tmp_path: Path
) -> None:
    private_kafka.start()
    server, address = start_monitord(
        tmp_path,
        private_kafka.bootstrap,
        extra={
            "server": {"log_each_record": False},
            "kafka": {"down_after_seconds": DOWN_AFTER, "metadata_interval_seconds": 1},
        },
    )
    prefix = unique("kstate")
    fleet = start_fleet(tmp_path, address, prefix, count=3, iterations=150, interval=0.2, ack_timeout=240)
    fleet.wait_status(r"fleet: 3/3 connected", timeout=60)
    server.wait_metric("monitord_records_forwarded_total", lambda v: v >= 30)
    assert health_status(address) == SERVING
    assert server.metrics()["monitord_kafka_state"] == 2

    private_kafka.stop()
    stopped = time.monotonic()
    server.wait_for(r"Kafka unavailable: ", timeout=DOWN_AFTER + SLACK)
    print(f"DOWN logged {time.monotonic() - stopped:.1f} s after the broker stopped (down_after {DOWN_AFTER} s)")
    wait_health(address, NOT_SERVING, timeout=SLACK)
    status = server.wait_status(r"Kafka DOWN \((no confirmation|no broker answered) for \d+ s", timeout=SLACK)
    print("STATUS while down:", status)
    samples = server.metrics()
    assert samples["monitord_kafka_state"] == 0 and samples["monitord_kafka_up"] == 0
    assert samples["monitord_kafka_unconfirmed_seconds"] > DOWN_AFTER

    private_kafka.start()
    restarted = time.monotonic()
    server.wait_for(r"✓ Kafka reachable again", timeout=120)
    print(f"up logged {time.monotonic() - restarted:.1f} s after the broker was started again")
    wait_health(address, SERVING, timeout=SLACK)
    server.wait_metric("monitord_kafka_state", lambda v: v == 2, timeout=SLACK)

    agents = fleet_result(fleet, 300)
    assert all(a["exit"] == 0 and a["sequence"] == 150 for a in agents.values()), agents
    found = read_records(private_kafka.bootstrap, "monitoring-data", agents, expect=450, timeout=60)
    assert loss_report("broker stopped while 3 agents stream", {a: 150 for a in agents}, found)["lost"] == 0
    text = server.text()
    print([line for line in text.splitlines() if "Kafka" in line and "librdkafka" not in line][-10:])
    assert text.count("Kafka unavailable") == 1 and text.count("Kafka reachable again") == 1, text[-3000:]


def test_idle_monitord_is_down_when_no_broker_answers_and_up_when_one_does(
    private_kafka: KafkaBroker, tmp_path: Path
) -> None:
    """Nothing waits for a confirmation, so only the metadata requests can tell."""
    private_kafka.start()
    server, address = start_monitord(
        tmp_path,
        private_kafka.bootstrap,
        extra={"kafka": {"down_after_seconds": DOWN_AFTER, "metadata_interval_seconds": 1}},
    )
    server.wait_metric("monitord_kafka_partitions", lambda v: v > 0)
    private_kafka.stop()
    server.wait_for(r"Kafka unavailable: no broker answered for \d+ s", timeout=DOWN_AFTER + SLACK)
    wait_health(address, NOT_SERVING, timeout=SLACK)
    private_kafka.start()
    server.wait_for(r"✓ Kafka reachable again", timeout=120)
    wait_health(address, SERVING, timeout=SLACK)
    text = server.text()
    assert text.count("Kafka unavailable") == 1 and text.count("Kafka reachable again") == 1, text[-3000:]


def test_min_isr_above_the_replication_factor_is_not_degraded(private_kafka: KafkaBroker, tmp_path: Path) -> None:
    """Kafka 4.1 caps min.insync.replicas at the replica count: records to a one-replica topic with
    ``min.insync.replicas=2`` are confirmed, so the state must stay up (measured: it does)."""
    private_kafka.start()
    set_min_isr(private_kafka.bootstrap, "monitoring-data", 2)
    server, address = start_monitord(
        tmp_path,
        private_kafka.bootstrap,
        extra={"kafka": {"down_after_seconds": DOWN_AFTER, "metadata_interval_seconds": 1}},
    )
    agent_id = unique("minisr")
    agent = start_agent(tmp_path, address, agent_id, iterations=20, interval=0.1)
    assert agent.wait(60) == 0, agent.text()[-3000:]
    found = read_records(private_kafka.bootstrap, "monitoring-data", [agent_id], expect=20)
    assert sequences(found, agent_id) == list(range(1, 21))
    server.wait_metric("monitord_kafka_partitions", lambda v: v > 0)
    now = server.metrics()
    assert now["monitord_kafka_state"] == 2 and now["monitord_kafka_partitions_impaired{problem=under_min_isr}"] == 0
    assert "Kafka degraded" not in server.text() and "Kafka unavailable" not in server.text()

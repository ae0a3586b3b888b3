"""Day-two operations: Prometheus metrics, gRPC health checking and reflection, compression."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from monitoring_testsupport import (
    BIN,
    REPO,
    KafkaBroker,
    Proc,
    free_port,
    health_status,
    read_records,
    scrape,
    sequences,
    start_agent,
    start_monitord,
    unique,
)

pytestmark = pytest.mark.kafka

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def metrics_url(proc: Proc) -> str:
    return proc.wait_for(r"Prometheus metrics on (http://\S+/metrics)").group(1)


def test_metrics_endpoints_report_what_flowed(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra={"server": {"log_each_record": False}})
    agent_id = unique("metrics")
    agent_metrics = f"127.0.0.1:{free_port()}"
    agent = start_agent(
        tmp_path, address, agent_id, iterations=8, interval=0.3, config={"metrics": {"listen": agent_metrics}}
    )
    # While the agent streams: its own endpoint.
    agent.wait_for(r"\[3\] Streamed metrics")
    mine = scrape(metrics_url(agent))
    print("agent:", {k: v for k, v in mine.items() if "bucket" not in k})
    assert mine["monitor_agentd_records_collected_total"] >= 3
    assert mine["monitor_agentd_connected"] == 1
    assert mine["monitor_agentd_collection_seconds_count"] >= 3
    assert mine["monitor_agentd_collection_seconds_bucket[le=+Inf]"] == mine["monitor_agentd_collection_seconds_count"]
    assert "monitor_agentd_spool_depth" in mine and "monitor_agentd_backoff_seconds" in mine
    assert agent.wait(60) == 0, agent.text()
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=8)
    assert sequences(found, agent_id) == list(range(1, 9))

    server_samples = scrape(metrics_url(server))
    print("monitord:", {k: v for k, v in server_samples.items() if "bucket" not in k})
    assert server_samples["monitord_records_received_total"] == 8
    assert server_samples["monitord_records_forwarded_total"] == 8
    assert server_samples["monitord_records_failed_total"] == 0
    assert 1 <= server_samples["monitord_acks_sent_total"] <= 8
    assert server_samples["monitord_streams_opened_total"] == 1
    assert server_samples["monitord_connected_agents"] == 0  # it said goodbye
    assert server_samples["monitord_kafka_up"] == 1
    # Every forwarded record (plus monitord's own presence records) has a delivery latency.
    assert server_samples["monitord_kafka_delivery_seconds_count"] >= 8
    assert server_samples["monitord_inflight_records"] == 0
    assert server_samples["process_resident_memory_bytes"] > 10_000_000  # the standard process_* families too


def test_health_serving_then_not_serving_from_the_start_of_shutdown(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra={"server": {"shutdown_grace_seconds": 5}})
    assert health_status(address) == SERVING
    assert health_status(address, "monitoring.v1.MonitoringService") == SERVING
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as unknown:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    # A connected agent keeps the shutdown busy for a moment; a watcher sees NOT_SERVING first.
    agent = start_agent(tmp_path, address, unique("health"), iterations=0, interval=0.5)
    server.wait_for(r"agents connected\)")
    seen: list[int] = []
    with grpc.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        seen.append(next(watch).status)
        assert server.popen is not None
        server.popen.send_signal(signal.SIGTERM)
        try:
            for update in watch:
                seen.append(update.status)
                if update.status == NOT_SERVING:
                    break
        except grpc.RpcError:
            pass
    print("health watch saw:", [health_pb2.HealthCheckResponse.ServingStatus.Name(s) for s in seen])
    assert seen[0] == SERVING and NOT_SERVING in seen
    assert server.wait(30) == 0
    agent.stop()


def test_health_not_serving_while_kafka_is_unreachable(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    server, address = start_monitord(tmp_path, nowhere, extra={"commands": {"enabled": False}})
    deadline = time.monotonic() + 30
    while health_status(address) != NOT_SERVING:
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.2)
    assert "Kafka unavailable" in server.text()
    server.stop()


def test_reflection_lists_and_describes_the_services(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap)
    with grpc.insecure_channel(address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"monitoring.v1.MonitoringService", "grpc.health.v1.Health"} <= services
        from google.protobuf.descriptor_pool import DescriptorPool

        pool = DescriptorPool(db)
        service = pool.FindServiceByName("monitoring.v1.MonitoringService")
        methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
    assert methods["StreamCommunication"] == ("monitoring.v1.AgentMessage", "monitoring.v1.ServerMessage")
    assert methods["RegisterAgent"] == ("monitoring.v1.AgentRegistration", "monitoring.v1.Ack")
    server.stop()


def test_grpcurl_lists_describes_and_health_checks(kafka: KafkaBroker, tmp_path: Path) -> None:
    """What an operator types: grpcurl (built from Go modules by scripts/tools.sh) against monitord."""
    grpcurl = subprocess.run(
        [str(REPO / "scripts/tools.sh"), "grpcurl"], capture_output=True, text=True, check=True
    ).stdout.strip()
    server, address = start_monitord(tmp_path, kafka.bootstrap)

    def run(*argv: str) -> str:
        out = subprocess.run([grpcurl, "-plaintext", *argv], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert {"monitoring.v1.MonitoringService", "grpc.health.v1.Health"} <= set(run(address, "list").split())
    described = run(address, "describe", "monitoring.v1.MonitoringService")
    assert (
        "rpc StreamCommunication ( stream .monitoring.v1.AgentMessage ) returns ( stream .monitoring.v1.ServerMessage )"
        in described
    )
    assert '"status": "SERVING"' in run(address, "grpc.health.v1.Health/Check")
    server.stop()


@pytest.mark.parametrize(("agent_side", "server_side"), [("none", "gzip"), ("gzip", "none")])
def test_stream_compression_either_way(kafka: KafkaBroker, tmp_path: Path, agent_side: str, server_side: str) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra={"server": {"compression": server_side}})
    agent_id = unique(f"gz-{agent_side}")
    agent = start_agent(
        tmp_path, address, agent_id, iterations=5, interval=0.1, config={"connection": {"compression": agent_side}}
    )
    assert agent.wait(60) == 0, agent.text()
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=5)
    assert sequences(found, agent_id) == [1, 2, 3, 4, 5]
    server.stop()


def test_metrics_address_in_use_is_a_clear_startup_error(kafka: KafkaBroker, tmp_path: Path) -> None:
    taken = f"127.0.0.1:{free_port()}"
    first, address = start_monitord(tmp_path, kafka.bootstrap, extra={"metrics": {"listen": taken}})
    second = Proc(
        "second",
        [str(BIN / "monitord"), "--config", str(tmp_path / "second.yaml")],
        tmp_path / "second.log",
    )
    (tmp_path / "second.yaml").write_text(
        (tmp_path / "monitord.yaml").read_text().replace(address.split(":")[1], str(free_port()))
    )
    second.start()
    assert second.wait(30) == 69
    assert re.search(rf"metrics endpoint cannot listen on {taken}: .*in use", second.text()), second.text()
    agent = start_agent(tmp_path, address, unique("busy"), iterations=1, config={"metrics": {"listen": taken}})
    assert agent.wait(30) == 69
    assert f"metrics endpoint cannot listen on {taken}" in agent.text()
    first.stop()

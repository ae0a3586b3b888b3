"""The core pipeline against a real Kafka broker and real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import (
    BIN,
    KafkaBroker,
    Proc,
    fleet_argv,
    loss_report,
    read_records,
    sequences,
    start_agent,
    start_monitord,
    unique,
)

pytestmark = pytest.mark.kafka


def test_seed_scenario(kafka: KafkaBroker, tmp_path: Path) -> None:
    """The seed's test: mock agent, 10 iterations -> 10 acks, 10 records, analyzer saw all 10."""
    started = time.monotonic()
    server, address = start_monitord(tmp_path, kafka.bootstrap)
    agent_id = unique("agent-001")
    analyzer = Proc(
        "analyzer",
        [
            str(BIN / "monitor-analyzer"),
            "--kafka-bootstrap",
            kafka.bootstrap,
            "--group",
            unique("analyzer"),
            "--from-beginning",
            "--agent",
            agent_id,
            "--summary-interval",
            "1",
        ],
        tmp_path / "analyzer.log",
    ).start()
    try:
        agent = start_agent(tmp_path, address, agent_id, iterations=10, interval=0.3)
        assert agent.wait(60) == 0, agent.text()
        out = agent.text()
        assert "✓ Agent registered: Agent registered successfully" in out
        assert "[1] Streamed metrics:\n  CPU: " in out and "\n  Memory: " in out
        assert "✓ Completed 10 iterations. Stopping stream." in out

        server.wait_for(rf"✓ Stream ended for agent '{agent_id}' \(10 metrics received\)")
        log = server.text()
        assert f"✓ Agent registered: {agent_id} on " in log
        for n in range(1, 11):
            assert f"✓ Forwarded metrics #{n} from agent '{agent_id}' to Kafka" in log

        found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=10)
        assert sequences(found, agent_id) == list(range(1, 11))
        assert all(isinstance(r.message, pb.MetricsData) and (r.server_id or "").startswith("monitord-") for r in found)

        analyzer.wait_for(rf"\[{agent_id} #10\]", timeout=30)
        lines = [line for line in analyzer.text().splitlines() if line.startswith(f"[{agent_id} #")]
        assert len(lines) == 10, analyzer.text()
    finally:
        analyzer.stop()
        assert server.stop() == 0
    print(f"seed scenario: {time.monotonic() - started:.1f}s including monitord and analyzer start")


def test_fifty_agents_at_once(kafka: KafkaBroker, tmp_path: Path) -> None:
    """50 concurrent streams: each agent gets every ack, Kafka holds every record exactly once."""
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra={"server": {"log_each_record": False}})
    prefix = unique("fleet")
    try:
        result = subprocess.run(
            fleet_argv(address, prefix, 50, 6, 0.3, tmp_path / "fleet"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        agents = json.loads(result.stdout)["agents"]
        assert len(agents) == 50
        assert all(a == {"exit": 0, "acked": 6, "sequence": 6, "dropped": 0} for a in agents.values()), agents
        found = read_records(kafka.bootstrap, "monitoring-data", agents, expect=300)
        report = loss_report("50 agents", {a: 6 for a in agents}, found)
        assert report["lost"] == 0 and report["duplicated"] == 0
    finally:
        server.stop()


def test_agent_killed_mid_stream(kafka: KafkaBroker, tmp_path: Path) -> None:
    """kill -9 of one agent: the server marks it disconnected and keeps serving the others."""
    server, address = start_monitord(tmp_path, kafka.bootstrap)
    victim_id, others = unique("victim"), [unique("survivor") for _ in range(2)]
    try:
        victim = start_agent(tmp_path, address, victim_id, iterations=0, interval=0.2)
        survivors = [start_agent(tmp_path, address, a, iterations=25, interval=0.2) for a in others]
        server.wait_for(rf"✓ Forwarded metrics #3 from agent '{victim_id}'")
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        server.wait_for(rf"✗ Agent '{victim_id}' disconnected", timeout=30)
        for proc in survivors:
            assert proc.wait(60) == 0, proc.text()
        for agent_id in others:
            server.wait_for(rf"✓ Stream ended for agent '{agent_id}' \(25 metrics received\)")
        found = read_records(kafka.bootstrap, "monitoring-data", others, expect=50)
        assert loss_report("survivors", {a: 25 for a in others}, found)["lost"] == 0
    finally:
        assert server.stop() == 0


def test_kafka_unreachable_gives_negative_acks_then_recovers(private_kafka: KafkaBroker, tmp_path: Path) -> None:
    """While Kafka is down agents get negative acks, never positive ones; after it returns all is stored."""
    private_kafka.start()  # creates the topics, then goes away while monitord runs
    private_kafka.stop()
    server, address = start_monitord(
        tmp_path,
        private_kafka.bootstrap,
        extra={"kafka": {"delivery_timeout_ms": 2000, "down_after_seconds": 2, "metadata_interval_seconds": 1}},
    )
    agent_id = unique("patient")
    try:
        agent = start_agent(
            tmp_path,
            address,
            agent_id,
            iterations=12,
            interval=0.25,
            config={"connection": {"retry_nacked_seconds": 1.0, "ack_timeout_seconds": 90}},
        )
        agent.wait_for(r"Server could not store metrics #\d+: Kafka delivery failed", timeout=30)
        server.wait_for(rf"✗ Kafka delivery failed for metrics #\d+ from agent '{agent_id}'")
        assert "✓ Forwarded" not in server.text()  # no positive ack while Kafka is away
        private_kafka.start()
        assert agent.wait(90) == 0, agent.text()
        server.wait_for(rf"✓ Stream ended for agent '{agent_id}' \(\d+ metrics received\)")
        found = read_records(private_kafka.bootstrap, "monitoring-data", [agent_id], expect=12)
        report = loss_report("Kafka down then back", {agent_id: 12}, found)
        assert report["lost"] == 0
        assert "Kafka unavailable" in server.text()
    finally:
        server.stop()

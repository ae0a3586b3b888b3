"""Fault suite: real processes, real Kafka; every test prints `sent / in Kafka / lost / duplicated`."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from monitoring_testsupport import (
    KafkaBroker,
    Proc,
    free_port,
    loss_report,
    read_records,
    start_agent,
    start_fleet,
    start_monitord,
    unique,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def fleet_result(fleet: Proc, timeout: float) -> dict[str, Any]:
    assert fleet.wait(timeout) == 0, fleet.text()[-3000:]
    text = fleet.text()
    return json.loads(text[text.index('{"agents"') :])["agents"]  # type: ignore[no-any-return]


def test_monitord_kill9_mid_run_then_restart(kafka: KafkaBroker, tmp_path: Path) -> None:
    port = free_port()
    server, address = start_monitord(tmp_path, kafka.bootstrap, port=port, extra={"server": {"log_each_record": False}})
    prefix = unique("k9srv")
    fleet = start_fleet(tmp_path, address, prefix, count=10, iterations=40, interval=0.25)
    fleet.wait_status(r"fleet: 10/10 connected", timeout=60)
    time.sleep(3)
    server.signal(signal.SIGKILL)
    server.wait(10)
    time.sleep(2)
    start_monitord(tmp_path, kafka.bootstrap, name="monitord-restarted", port=port)
    agents = fleet_result(fleet, 120)
    assert all(a["exit"] == 0 and a["sequence"] == 40 for a in agents.values()), agents
    found = read_records(kafka.bootstrap, "monitoring-data", agents, expect=400)
    report = loss_report("monitord kill -9 + restart (10 agents)", {a: 40 for a in agents}, found)
    assert report["lost"] == 0


def test_kafka_stopped_for_20s_with_a_delivery_timeout(private_kafka: KafkaBroker, tmp_path: Path) -> None:
    private_kafka.start()
    server, address = start_monitord(
        tmp_path,
        private_kafka.bootstrap,
        extra={"server": {"log_each_record": False}, "kafka": {"delivery_timeout_ms": 5000}},
    )
    prefix = unique("kdown")
    fleet = start_fleet(tmp_path, address, prefix, count=5, iterations=80, interval=0.5, ack_timeout=180)
    fleet.wait_status(r"fleet: 5/5 connected", timeout=60)
    time.sleep(5)
    private_kafka.stop()
    server.wait_for(r"Kafka unavailable", timeout=60)
    time.sleep(20)  # four delivery timeouts: every record sent meanwhile is nacked and resent
    private_kafka.start()
    server.wait_for(r"Kafka reachable again", timeout=120)
    agents = fleet_result(fleet, 300)
    assert all(a["exit"] == 0 and a["sequence"] == 80 for a in agents.values()), agents
    found = read_records(private_kafka.bootstrap, "monitoring-data", agents, expect=400, timeout=60)
    report = loss_report("Kafka broker stopped 20 s, delivery timeout 5 s (5 agents)", {a: 80 for a in agents}, found)
    assert report["lost"] == 0


def test_agent_kill9_with_unacked_records_replays_them(kafka: KafkaBroker, tmp_path: Path) -> None:
    port = free_port()
    agent_id = unique("k9agent")
    address = f"127.0.0.1:{port}"  # nobody listens yet: everything stays in the spool
    first = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.2)
    first.wait_for(r"\[5\] Spooled \(not connected\) metrics", timeout=30)
    first.signal(signal.SIGKILL)
    first.wait(10)
    start_monitord(tmp_path, kafka.bootstrap, port=port)
    second = start_agent(tmp_path, address, agent_id, iterations=3, interval=0.2)
    assert second.wait(60) == 0, second.text()
    out = second.text()
    assert "unacknowledged records on disk" in out
    last = max(int(n) for n in re.findall(r"\[(\d+)\] Streamed metrics", out))
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=last)
    report = loss_report("agent kill -9 with unacked records", {agent_id: last}, found)
    assert report["lost"] == 0 and last >= 8  # the sequence continued after the restart


def test_spool_bound_drops_exactly_the_oldest(kafka: KafkaBroker, tmp_path: Path) -> None:
    port = free_port()
    agent_id = unique("bound")
    agent = start_agent(
        tmp_path,
        f"127.0.0.1:{port}",
        agent_id,
        iterations=12,
        interval=0.1,
        config={"spool": {"max_records": 5}, "connection": {"backoff_max_seconds": 1}},
    )
    agent.wait_for(r"✓ Completed 12 iterations", timeout=30)
    server, _ = start_monitord(tmp_path, kafka.bootstrap, port=port)
    assert agent.wait(60) == 0, agent.text()
    assert "dropped unacknowledged metrics #7 (7 dropped so far)" in agent.text()
    server.wait_for(rf"Agent '{agent_id}' reports 7 metrics dropped from its full spool")
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=5)
    seqs = sorted(r.message.sequence for r in found)  # type: ignore[attr-defined]
    print(f"spool bound 5, 12 collected: sent 12 / in Kafka {len(seqs)} / dropped 7 (reported) / duplicated 0")
    assert seqs == [8, 9, 10, 11, 12]


def test_reconnect_storm_500_agents(kafka: KafkaBroker, tmp_path: Path) -> None:
    port = free_port()
    server, address = start_monitord(tmp_path, kafka.bootstrap, port=port, extra={"server": {"log_each_record": False}})
    prefix = unique("storm")
    attempts_file = tmp_path / "attempts.json"
    fleet = start_fleet(tmp_path, address, prefix, count=500, iterations=0, interval=10, attempts_file=attempts_file)
    fleet.wait_status(r"fleet: 500/500 connected", timeout=180)
    restart_at = time.time()
    assert server.stop(60) == 0
    new_server, _ = start_monitord(
        tmp_path, kafka.bootstrap, name="monitord-new", port=port, extra={"server": {"log_each_record": False}}
    )
    new_server.wait_for(r"[(;] 500 agents connected\)", timeout=30)
    back_after = time.time() - restart_at
    fleet.stop(60)
    attempts = json.loads(attempts_file.read_text())
    after = [t - restart_at for times in attempts.values() for t in times if t >= restart_at]
    histogram = Counter(int(t * 2) / 2 for t in after)
    print(f"reconnect storm: 500 agents back {back_after:.1f}s after the restart began; {len(after)} attempts")
    for bucket in sorted(histogram):
        print(f"  {bucket:5.1f}s  {histogram[bucket]:4d} {'#' * (histogram[bucket] // 5)}")
    assert "Traceback" not in new_server.text() and " ERROR " not in new_server.text()
    # Right after the redirect every agent tries at once (by design: go elsewhere now); the retries
    # of those that found no server are what the jitter must spread, not send as one burst.
    retries = sorted(
        ts[1] - restart_at
        for ts in ([t for t in times if t >= restart_at] for times in attempts.values())
        if len(ts) >= 2
    )
    print(
        f"  {len(retries)} agents retried; their first retries span {retries[-1] - retries[0] if retries else 0:.2f}s"
    )
    if len(retries) >= 20:  # enough agents found no server to judge the spread
        busiest = max(Counter(int(t * 10) for t in retries).values())
        assert retries[-1] - retries[0] > 0.3 and busiest < 0.5 * len(retries), retries

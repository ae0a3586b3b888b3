"""Whoever can write to the commands topic cannot exhaust monitord: oversized and malformed
records are refused before they cost memory or log lines, and a good agent's commands still flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer

from monitoring_testsupport import (
    KafkaBroker,
    command_responses,
    produce_command,
    rss_kib,
    start_agent,
    start_monitord,
    statuses,
    unique,
)

pytestmark = pytest.mark.kafka


def test_a_flood_of_huge_command_records_costs_neither_memory_nor_log(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, wait_commands=True)
    agent_id = unique("good")
    start_agent(tmp_path, address, agent_id, iterations=0, interval=1.0)
    server.wait_agents(1)
    assert statuses(command_responses(kafka.bootstrap, agent_id, produce_command(kafka.bootstrap, agent_id, "ping")))
    idle = rss_kib(server.pid, "VmRSS")
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 2_000_000})
    huge_name = "x" * 900_000
    counts = {"huge name": 150, "bad key": 100, "huge id": 50}
    for n in range(counts["huge name"]):  # the reported attack: 900 KB names for absent agents, TTL 1 day
        body = {"commandId": f"h{n}", "agentId": f"ghost-{n}", "command": huge_name, "ttlSeconds": 86_400}
        producer.produce("commands", key=f"ghost-{n}".encode(), value=json.dumps(body).encode())
        producer.poll(0)
    for n in range(counts["bad key"]):  # keys that are no agent id, with control characters
        body = {"commandId": f"k{n}", "command": "ping"}
        producer.produce("commands", key=f"\x1b[31mghost\n{n}".encode() * 50, value=json.dumps(body).encode())
    for n in range(counts["huge id"]):
        body = {"commandId": "i" * 100_000 + str(n), "agentId": agent_id, "command": "ping"}
        producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
        producer.poll(0)
    assert producer.flush(60) == 0
    # The good agent's next command is still delivered (after all of the above in the partition).
    after = produce_command(kafka.bootstrap, agent_id, "ping")
    assert statuses(command_responses(kafka.bootstrap, agent_id, after, timeout=60)) == ["DELIVERED", "SUCCEEDED"]
    peak = rss_kib(server.pid, "VmHWM")
    log_bytes = server.log_path.stat().st_size
    print(
        f"commands flood {counts}: monitord RSS idle {idle} KiB, peak {peak} KiB ({peak / idle:.2f}x); log {log_bytes} B"
    )
    assert peak < 2 * idle, (idle, peak)
    assert log_bytes < 200_000 and "\x1b" not in server.text() and huge_name[:1000] not in server.text()
    assert server.text().count("Invalid command record") <= 20  # a budget of 10 lines per 10 s

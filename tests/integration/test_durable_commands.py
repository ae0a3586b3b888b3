"""Commands survive monitord's crashes and restarts: held commands are rebuilt from Kafka, delivery
is instant again as soon as the restarted instance is READY, and with two instances monitord's own
answers (EXPIRED, INVALID) are written once."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from monitoring_testsupport import (
    KafkaBroker,
    Monitord,
    command_responses,
    free_port,
    produce_command,
    start_agent,
    start_monitord,
    statuses,
    unique,
)

pytestmark = pytest.mark.kafka

FAST_RECONNECT = {"connection": {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0}}


def server(tmp: Path, kafka: KafkaBroker, name: str, port: int, server_id: str) -> Monitord:
    proc, _ = start_monitord(tmp, kafka.bootstrap, name=name, port=port, extra={"server": {"server_id": server_id}})
    return proc


def finals(responses: list[Any]) -> list[str]:
    return [s for s in statuses(responses) if s != "DELIVERED"]


def test_delivery_is_instant_right_after_a_kill9_restart(kafka: KafkaBroker, tmp_path: Path) -> None:
    port, server_id, agent_id = free_port(), unique("durable-k9"), unique("k9-agent")
    first = server(tmp_path, kafka, "monitord-1", port, server_id)
    agent = start_agent(tmp_path, f"127.0.0.1:{port}", agent_id, iterations=0, interval=1.0, config=FAST_RECONNECT)
    first.wait_agents(1)
    first.signal(signal.SIGKILL)
    first.wait(10)
    second = server(tmp_path, kafka, "monitord-2", port, server_id)  # READY: the replay is done
    second.wait_agents(1)
    started = time.monotonic()
    command_id = produce_command(kafka.bootstrap, agent_id, "ping")
    responses = command_responses(kafka.bootstrap, agent_id, command_id, timeout=20)
    took = time.monotonic() - started
    print(f"ping after a kill -9 restart: {statuses(responses)} in {took:.2f}s")
    assert statuses(responses) == ["DELIVERED", "SUCCEEDED"]  # (a consumer group took 40-45 s here)
    agent.stop()


def test_a_held_command_survives_a_restart_and_reaches_the_agent(kafka: KafkaBroker, tmp_path: Path) -> None:
    port, server_id, agent_id = free_port(), unique("durable-held"), unique("held-agent")
    first = server(tmp_path, kafka, "monitord-1", port, server_id)
    command_id = produce_command(kafka.bootstrap, agent_id, "ping", ttlSeconds=120)
    first.wait_for(re.escape(f"Command {command_id} (ping) for agent '{agent_id}' held"))
    assert first.stop() == 0
    second = server(tmp_path, kafka, "monitord-2", port, server_id)  # rebuilt from Kafka alone
    start_agent(tmp_path, f"127.0.0.1:{port}", agent_id, iterations=0, interval=1.0, config=FAST_RECONNECT)
    responses = command_responses(kafka.bootstrap, agent_id, command_id, timeout=30, settle=3)
    assert statuses(responses) == ["DELIVERED", "SUCCEEDED"]
    assert f"→ Pushed command {command_id} (ping) to agent '{agent_id}'" in second.text()


def test_two_instances_answer_expired_and_invalid_once(kafka: KafkaBroker, tmp_path: Path) -> None:
    a = server(tmp_path, kafka, "monitord-a", free_port(), unique("duty-a"))
    b = server(tmp_path, kafka, "monitord-b", free_port(), unique("duty-b"))
    for proc in (a, b):  # both hold duties or wait for them; either way one writes each answer
        proc.wait_metric("monitord_commands_partitions_assigned", lambda v: v > 0, 30)
    agent_id = unique("absent")
    expiring = [produce_command(kafka.bootstrap, agent_id, "ping", ttlSeconds=2) for _ in range(5)]
    invalid = unique("invalid")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    body = {"commandId": invalid, "agentId": agent_id}  # no command name
    producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
    assert producer.flush(10) == 0
    for command_id in expiring:
        responses = command_responses(kafka.bootstrap, agent_id, command_id, timeout=40, settle=3)
        assert finals(responses) == ["EXPIRED"], responses
    assert finals(command_responses(kafka.bootstrap, agent_id, invalid, timeout=40, settle=3)) == ["INVALID"]

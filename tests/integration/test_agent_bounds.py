"""The agent bounds what it accepts from the command stream: commands with 900 KB ids, 2000-character
names and too many arguments, produced straight to the ``commands`` topic, leave its state small and
its log short, a normal ``ping`` still succeeds, and an ``--iterations`` agent still ends with exit 0.

monitord refuses such commands itself (INVALID); here its limits are opened as far as its
configuration allows, so that everything but the ids (one fixed pattern) reaches the agent, whose
own bounds must hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from monitoring_testsupport import (
    KafkaBroker,
    command_responses,
    produce_command,
    read_records,
    sequences,
    start_agent,
    start_monitord,
    statuses,
    unique,
)

pytestmark = pytest.mark.kafka

HUGE_IDS = 50
LONG_NAMES = 5
#: monitord's command limits at their configurable maximum.
OPEN_LIMITS = {
    "commands": {
        "max_record_bytes": 10_485_760,
        "max_name_chars": 4096,
        "max_requested_by_chars": 4096,
        "max_args": 10_000,
        "max_arg_bytes": 1_048_576,
    }
}
MAX_STATE_BYTES = 5 * 1024 * 1024
MAX_LOG_BYTES = 1024 * 1024


def produce_hostile(bootstrap: str, agent_id: str) -> list[str]:
    """50 pings with 900 KB ids, then 5 commands with 2000-character names and one with 500
    arguments (valid ids); returns the ids of those 6."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_000_000})
    for n in range(HUGE_IDS):
        body: dict[str, Any] = {"commandId": f"{n}-" + "x" * 900_000, "agentId": agent_id, "command": "ping"}
        producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
        producer.poll(0)
    named = [unique("long-name") for _ in range(LONG_NAMES)]
    for command_id in named:
        body = {"commandId": command_id, "agentId": agent_id, "command": "p" * 2000, "requestedBy": "r" * 2000}
        producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
    many_args = unique("many-args")
    body = {"commandId": many_args, "agentId": agent_id, "command": "set-interval", "args": ["1"] * 500}
    producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
    assert producer.flush(30) == 0
    return [*named, many_args]


def state_bytes(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.rglob("*") if p.is_file())


def test_a_running_agent_survives_hostile_commands_and_still_answers(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=OPEN_LIMITS, wait_commands=True)
    agent_id = unique("bounds")
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.5)
    server.wait_agents(1)
    named = produce_hostile(kafka.bootstrap, agent_id)
    for command_id in named:  # answered by the agent, unstored, with what monitord can store
        assert statuses(command_responses(kafka.bootstrap, agent_id, command_id, timeout=60)) == ["REJECTED"]
    command_id = produce_command(kafka.bootstrap, agent_id, "ping")
    assert statuses(command_responses(kafka.bootstrap, agent_id, command_id, timeout=60)) == [
        "DELIVERED",
        "SUCCEEDED",
    ], agent.text()
    assert agent.running(), agent.text()
    assert state_bytes(tmp_path / f"state-{agent_id}") < MAX_STATE_BYTES
    assert (tmp_path / f"agent-{agent_id}.log").stat().st_size < MAX_LOG_BYTES
    assert "x" * 200 not in agent.text()  # ids are shown cut, never whole
    assert "rejected unstored: command name longer than 128 characters" in agent.text()
    assert "rejected unstored: 500 arguments (limit 64)" in agent.text()
    agent.stop()
    server.stop()


def test_an_iterations_agent_given_hostile_commands_exits_0_with_every_record(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=OPEN_LIMITS, wait_commands=True)
    agent_id = unique("bounds-it")
    produce_hostile(kafka.bootstrap, agent_id)  # held by monitord, delivered once the agent connects
    agent = start_agent(tmp_path, address, agent_id, iterations=20, interval=0.2)
    assert agent.wait(120) == 0, agent.text()  # no refused answer left waiting in its outbox
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=20)
    assert sequences(found, agent_id) == list(range(1, 21))
    assert state_bytes(tmp_path / f"state-{agent_id}") < MAX_STATE_BYTES
    server.stop()

"""The agent's command journal across `kill -9`: real monitord, real agent processes, real Kafka."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import (
    FINAL_STATUSES,
    KafkaBroker,
    command_responses,
    free_port,
    produce_command,
    read_records,
    start_agent,
    start_monitord,
    statuses,
    unique,
)

pytestmark = pytest.mark.kafka


def journal_config(tmp: Path) -> dict[str, Any]:
    """Two slow commands, each leaving one line in a marker file per run."""
    return {
        "connection": {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0},
        "commands": {
            "definitions": {
                "slow": {"argv": ["/bin/sh", "-c", f"echo ran >> {tmp}/slow.marker; exec sleep 20"]},
                "finish-later": {"argv": ["/bin/sh", "-c", f"echo ran >> {tmp}/later.marker; sleep 10; echo done"]},
            },
            "default_timeout_seconds": 60,
        },
    }


def wait_delivered(kafka: KafkaBroker, agent_id: str, command_id: str) -> None:
    """Until monitord published the agent's DELIVERED for ``command_id`` on command-responses."""

    def delivered(recs: list[Any]) -> bool:
        return any(r.message.command_id == command_id and r.message.status == pb.DELIVERED for r in recs)

    found = read_records(
        kafka.bootstrap, "command-responses", [agent_id], expect=10**9, timeout=30, settle=0, stop=delivered
    )
    assert delivered(found), "no DELIVERED in Kafka"


def finals(responses: list[Any]) -> list[Any]:
    return [r for r in responses if pb.CommandStatus.Name(r.status) in FINAL_STATUSES]


def test_command_running_when_the_agent_is_killed_is_answered_failed_once(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, wait_commands=True)
    agent_id = unique("journal-crash")
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=1.0, config=journal_config(tmp_path))
    server.wait_agents(1)
    command_id = produce_command(kafka.bootstrap, agent_id, "slow")
    wait_delivered(kafka, agent_id, command_id)
    agent.signal(signal.SIGKILL)
    agent.wait(10)

    again = start_agent(tmp_path, address, agent_id, iterations=0, interval=1.0, config=journal_config(tmp_path))
    again.wait_for(
        rf"Command journal: 1 command was running when the agent stopped \({command_id}, slow\): answered FAILED"
    )
    responses = command_responses(kafka.bootstrap, agent_id, command_id, settle=3)
    [final] = finals(responses)
    assert statuses([final]) == ["FAILED"] and final.exit_code == -1 and final.reported_by == "agent"
    assert "agent restarted while the command was running" in final.message
    assert "its outcome is unknown" in final.message
    assert (tmp_path / "slow.marker").read_text() == "ran\n"  # it did not run again
    again.stop()
    server.stop()


def test_final_response_whose_ack_was_lost_is_delivered_from_disk_once(kafka: KafkaBroker, tmp_path: Path) -> None:
    port = free_port()
    server, address = start_monitord(tmp_path, kafka.bootstrap, port=port, wait_commands=True)
    agent_id = unique("journal-outbox")
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=1.0, config=journal_config(tmp_path))
    server.wait_agents(1)
    command_id = produce_command(kafka.bootstrap, agent_id, "finish-later")
    wait_delivered(kafka, agent_id, command_id)
    server.signal(signal.SIGKILL)  # the command finishes while no server is there to acknowledge it
    server.wait(10)
    agent.wait_for(rf"✓ Command {command_id} \(finish-later\) → SUCCEEDED", timeout=30)
    agent.signal(signal.SIGKILL)
    agent.wait(10)

    server2, _ = start_monitord(tmp_path, kafka.bootstrap, name="monitord-2", port=port, wait_commands=True)
    again = start_agent(tmp_path, address, agent_id, iterations=0, interval=1.0, config=journal_config(tmp_path))
    again.wait_for(r"Command journal: \d+ unacknowledged responses? on disk will be sent first")
    responses = command_responses(kafka.bootstrap, agent_id, command_id, settle=3)
    [final] = finals(responses)
    assert statuses([final]) == ["SUCCEEDED"] and final.stdout == "done\n" and final.exit_code == 0
    assert (tmp_path / "later.marker").read_text() == "ran\n"
    again.stop()
    server2.stop()

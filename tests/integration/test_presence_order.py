"""Presence records ordered by connection number, against real monitord and agent processes.

An agent moves from server A to server B while A is suspended (SIGSTOP; the agent is killed and
started again with B, its state directory kept): A publishes its DISCONNECTED only after SIGCONT,
after B's CONNECTED. ``monitorctl agents`` must still show the
agent CONNECTED via B, and the log must end with B's CONNECTED again (B's presence guard answers
A's outdated record), so compaction keeps the state that holds. And ``monitorctl send --wait`` of a
long command to an agent killed -9 after DELIVERED ends with exit 3 instead of waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import BIN, KafkaBroker, Proc, read_records, start_agent, start_monitord, unique, write_yaml

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def monitorctl(tmp: Path, bootstrap: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    config = write_yaml(tmp / "ctl.yaml", {"kafka": {"bootstrap_servers": bootstrap}})
    return subprocess.run(
        [str(BIN / "monitorctl"), "--config", str(config), *args], capture_output=True, text=True, timeout=timeout
    )


def presence_of(found: list[records.DecodedRecord]) -> list[pb.AgentStatus]:
    return [r.message for r in found if isinstance(r.message, pb.AgentStatus)]


def describe(statuses: list[pb.AgentStatus]) -> list[tuple[str, str, int]]:
    return [(pb.AgentPresence.Name(s.state), s.server_id, s.connection) for s in statuses]


@contextlib.contextmanager
def suspended(proc: Proc) -> Iterator[None]:
    """``proc`` stopped (SIGSTOP) inside the block; always continued afterwards."""
    proc.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.signal(signal.SIGCONT)


def test_a_late_disconnect_from_the_old_server_does_not_win(kafka: KafkaBroker, tmp_path: Path) -> None:
    server_a, address_a = start_monitord(tmp_path, kafka.bootstrap, name="monitord-a")
    server_b, address_b = start_monitord(tmp_path, kafka.bootstrap, name="monitord-b")
    agent_id = unique("moving")
    agent = start_agent(tmp_path, address_a, agent_id, iterations=0, interval=0.5)
    server_a.wait_agents(1)
    [on_a] = presence_of(read_records(kafka.bootstrap, "agent-status", [agent_id], expect=1))
    assert on_a.state == pb.CONNECTED and on_a.connection > 0
    a_id = on_a.server_id

    with suspended(server_a):
        # A cannot notice: the agent dies and comes back on B (same state directory).
        agent.signal(signal.SIGKILL)
        agent.wait(10)
        start_agent(tmp_path, address_b, agent_id, iterations=0, interval=0.5)
        server_b.wait_agents(1, timeout=60)

        def on_b(found: list[records.DecodedRecord]) -> bool:
            return any(s.state == pb.CONNECTED and s.server_id != a_id for s in presence_of(found))

        moved = presence_of(read_records(kafka.bootstrap, "agent-status", [agent_id], expect=10**6, stop=on_b))
    [connected_b] = [s for s in moved if s.state == pb.CONNECTED and s.server_id != a_id]
    b_id = connected_b.server_id
    assert connected_b.connection > on_a.connection

    def late_end_of_a(found: list[records.DecodedRecord]) -> bool:
        return any(s.server_id == a_id and s.state in (pb.DISCONNECTED, pb.STALE) for s in presence_of(found))

    found = presence_of(
        read_records(kafka.bootstrap, "agent-status", [agent_id], expect=10**6, stop=late_end_of_a, timeout=60)
    )
    assert late_end_of_a_in(found, a_id, on_a.connection), describe(found)

    # The reader's rule: the higher connection wins, whatever the log order.
    result = monitorctl(tmp_path, kafka.bootstrap, "agents", "--json", "--all")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    [row] = [x["record"] for x in rows if x["record"]["agentId"] == agent_id]
    assert (row["state"], row["serverId"], int(row["connection"])) == ("CONNECTED", b_id, connected_b.connection)
    table = monitorctl(tmp_path, kafka.bootstrap, "agents")
    [line] = [x for x in table.stdout.splitlines() if x.startswith(agent_id + " ")]
    assert line.split()[1:3] == ["CONNECTED", b_id]

    # The log itself ends right: B's presence guard published CONNECTED again after A's record.
    def ends_connected_via_b(found: list[records.DecodedRecord]) -> bool:
        statuses = presence_of(found)
        return late_end_of_a(found) and statuses[-1].state == pb.CONNECTED and statuses[-1].server_id == b_id

    log = presence_of(
        read_records(kafka.bootstrap, "agent-status", [agent_id], expect=10**6, stop=ends_connected_via_b, timeout=30)
    )
    last = log[-1]
    assert (pb.AgentPresence.Name(last.state), last.server_id, last.connection) == (
        "CONNECTED",
        b_id,
        connected_b.connection,
    ), f"the log ends with {describe(log)[-1]} (is monitord's PresenceGuard wired to agent-status?): {describe(log)}"
    assert f"Agent '{agent_id}': server {a_id} reports connection {on_a.connection}" in server_b.text()


def late_end_of_a_in(statuses: list[pb.AgentStatus], a_id: str, connection: int) -> bool:
    """A's record about the agent's first connection comes after B's CONNECTED in the log."""
    b_at = next(i for i, s in enumerate(statuses) if s.state == pb.CONNECTED and s.server_id != a_id)
    return any(
        s.server_id == a_id and s.state in (pb.DISCONNECTED, pb.STALE) and s.connection == connection
        for s in statuses[b_at + 1 :]
    )


def test_send_wait_reports_an_agent_killed_after_delivered(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, wait_commands=True)
    agent_id = unique("vanishing")
    pid_file = tmp_path / "long.pid"
    config: dict[str, Any] = {
        "commands": {
            "definitions": {
                "long": {"argv": ["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 300"], "timeout_seconds": 600}
            }
        }
    }
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.5, config=config)
    server.wait_agents(1)
    ctl_config = write_yaml(tmp_path / "ctl.yaml", {"kafka": {"bootstrap_servers": kafka.bootstrap}})
    argv = [str(BIN / "monitorctl"), "--config", str(ctl_config), "send", "--wait", "--wait-timeout", "240"]
    send = Proc("monitorctl send", [*argv, agent_id, "long"], tmp_path / "send.log").start()
    try:
        send.wait_for(f"DELIVERED to {agent_id}", timeout=60)
        agent.signal(signal.SIGKILL)
        agent.wait(10)
        code = send.wait(120)  # far below --wait-timeout: it must not need it
    finally:
        if pid_file.exists():  # the command's process outlived its agent
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
    text = send.text()
    assert code == 3, text
    command_id = text.splitlines()[0]
    assert f"monitorctl: agent '{agent_id}' disconnected while running command {command_id} (DELIVERED at " in text, (
        text
    )
    assert "); its final status will be written when it reconnects (FAILED if it restarted)" in text
    assert "no final response" not in text

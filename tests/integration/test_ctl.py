"""monitorctl against the real Kafka broker, real monitord and real agent processes.

``send --wait`` is checked against a stand-in for monitord (a thread that answers each command on
the commands topic with DELIVERED and a chosen final status), so every exit status can be
provoked on purpose.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import BIN, KafkaBroker, Proc, read_records, start_agent, start_monitord, unique, write_yaml

pytestmark = pytest.mark.kafka


def ctl_config(tmp: Path, bootstrap: str) -> Path:
    """A monitord.yaml with just the Kafka section, so no /etc file can influence the test."""
    return write_yaml(tmp / "ctl.yaml", {"kafka": {"bootstrap_servers": bootstrap}})


def monitorctl(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "monitorctl"), "--config", str(config), *args], capture_output=True, text=True, timeout=timeout
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- send -------------------------------------------------------------------------------------------


def test_send_puts_one_command_on_the_topic(kafka: KafkaBroker, tmp_path: Path) -> None:
    config = ctl_config(tmp_path, kafka.bootstrap)
    agent_id = unique("ctl-send")
    before = time.time()
    result = monitorctl(
        config,
        "send",
        "--timeout",
        "12",
        "--ttl",
        "90",
        "--requested-by",
        "alice",
        agent_id,
        "echo",
        "--",
        "-n",
        "x",
    )
    assert result.returncode == 0, result.stderr
    command_id = result.stdout.strip()
    assert len(command_id) == 32 and int(command_id, 16) >= 0, result.stdout

    found = read_records(kafka.bootstrap, "commands", [agent_id], expect=1, settle=1.0)
    assert len(found) == 1
    [record] = found
    command = record.message
    assert isinstance(command, pb.CommandMessage)
    assert record.agent_id == agent_id and record.server_id == "monitorctl"
    assert (command.command_id, command.agent_id, command.command, list(command.args)) == (
        command_id,
        agent_id,
        "echo",
        ["-n", "x"],
    )
    assert (command.timeout_seconds, command.ttl_seconds, command.requested_by) == (12, 90, "alice")
    assert before - 1 <= command.created_at.ToNanoseconds() / 1e9 <= time.time() + 1

    # The record's wire format: key = agent id, JSON value (the default), the records headers.
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": unique("raw"), "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics("commands", timeout=10).topics["commands"].partitions
        consumer.assign([TopicPartition("commands", p, 0) for p in partitions])
        deadline = time.monotonic() + 20
        raw = None
        while raw is None and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if not msg.error() and msg.key() == agent_id.encode():
                    raw = msg
        assert raw is not None
        value, headers = raw.value(), list[Any](raw.headers() or [])
        assert value is not None and json.loads(value)["commandId"] == command_id
        assert records.header(headers, "content-type") == "application/json"
        assert records.header(headers, "message-type") == "monitoring.v1.CommandMessage"
    finally:
        consumer.close()


class StandInMonitord:
    """Answers commands for the planned agents with DELIVERED, then the planned final response."""

    def __init__(self, bootstrap: str, plan: dict[str, pb.CommandStatus.ValueType]) -> None:
        self.plan = plan
        self.stop = threading.Event()
        self.answered: list[str] = []
        self.errors: list[BaseException] = []
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("stand-in")})
        # Positioned at the current end before any monitorctl runs, so it sees exactly their commands.
        partitions = self._consumer.list_topics("commands", timeout=10).topics["commands"].partitions
        ends = [TopicPartition("commands", p) for p in partitions]
        self._consumer.assign(
            [TopicPartition("commands", tp.partition, self._consumer.get_watermark_offsets(tp, 10)[1]) for tp in ends]
        )
        self._thread = threading.Thread(target=self._run, name="stand-in-monitord", daemon=True)

    def __enter__(self) -> StandInMonitord:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(10)
        self._consumer.close()
        assert not self.errors, self.errors

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                for msg in self._consumer.consume(100, timeout=0.2):
                    if msg.error():
                        continue
                    command = records.decode(msg.key(), msg.value(), list[Any](msg.headers() or [])).message
                    if isinstance(command, pb.CommandMessage) and command.agent_id in self.plan:
                        self._answer(command, self.plan[command.agent_id])
        except BaseException as exc:
            self.errors.append(exc)

    def _answer(self, command: pb.CommandMessage, final: pb.CommandStatus.ValueType) -> None:
        common: dict[str, Any] = {
            "command_id": command.command_id,
            "agent_id": command.agent_id,
            "command": command.command,
        }
        responses = [
            pb.CommandResponseMessage(status=pb.DELIVERED, reported_by="agent", **common),
            pb.CommandResponseMessage(
                status=final,
                exit_code={pb.SUCCEEDED: 0, pb.FAILED: 3, pb.TIMED_OUT: -9}.get(final, 0),
                stdout="hello from the stand-in\n" if final == pb.SUCCEEDED else "",
                stderr="oops\n" if final == pb.FAILED else "",
                duration_seconds=0.01,
                message="" if final in (pb.SUCCEEDED, pb.FAILED) else f"simulated {pb.CommandStatus.Name(final)}",
                reported_by="agent",
                **common,
            ),
        ]
        for response in responses:
            key, value, headers = records.encode(response, agent_id=command.agent_id, server_id="stand-in")
            self._producer.produce("command-responses", value=value, key=key, headers=list[Any](headers))
        assert self._producer.flush(10) == 0
        self.answered.append(command.agent_id)


EXPECTED = {
    pb.SUCCEEDED: 0,
    pb.FAILED: 1,
    pb.TIMED_OUT: 124,
    pb.REJECTED: 126,
    pb.EXPIRED: 75,
    pb.INVALID: 65,
}


def test_send_wait_exit_statuses(kafka: KafkaBroker, tmp_path: Path) -> None:
    config = ctl_config(tmp_path, kafka.bootstrap)
    plan = {unique(f"ctl-{pb.CommandStatus.Name(s).lower()}"): s for s in EXPECTED}
    silent = unique("ctl-silent")
    started = time.monotonic()
    with StandInMonitord(kafka.bootstrap, plan) as stand_in:
        procs: dict[str, Proc] = {}
        for agent_id in [*plan, silent]:
            wait_timeout = "3" if agent_id == silent else "45"
            argv = [str(BIN / "monitorctl"), "--config", str(config), "send", "--wait", "--wait-timeout", wait_timeout]
            procs[agent_id] = Proc(agent_id, [*argv, agent_id, "ping"], tmp_path / f"{agent_id}.log").start()
        codes = {agent_id: proc.wait(60) for agent_id, proc in procs.items()}
    assert {agent_id: codes[agent_id] for agent_id in plan} == {a: EXPECTED[s] for a, s in plan.items()}, {
        a: procs[a].text() for a in plan
    }
    assert codes[silent] == 69
    assert "no final response to command" in procs[silent].text() and "within 3s" in procs[silent].text()
    assert sorted(stand_in.answered) == sorted(plan)

    ok_agent = next(a for a, s in plan.items() if s == pb.SUCCEEDED)
    lines = procs[ok_agent].text().splitlines()
    assert len(lines[0]) == 32  # the command id
    assert lines[1:] == [f"DELIVERED to {ok_agent}", "SUCCEEDED exit 0 in 0.01s", "hello from the stand-in"]
    failed_agent = next(a for a, s in plan.items() if s == pb.FAILED)
    assert "FAILED exit 3 in 0.01s" in procs[failed_agent].text() and "oops" in procs[failed_agent].text()
    rejected_agent = next(a for a, s in plan.items() if s == pb.REJECTED)
    assert "REJECTED: simulated REJECTED (reported by agent)" in procs[rejected_agent].text()
    print(f"send --wait, 7 concurrent runs: {time.monotonic() - started:.1f}s")


def test_send_wait_json(kafka: KafkaBroker, tmp_path: Path) -> None:
    config = ctl_config(tmp_path, kafka.bootstrap)
    agent_id = unique("ctl-json")
    with StandInMonitord(kafka.bootstrap, {agent_id: pb.SUCCEEDED}):
        result = monitorctl(config, "send", "--json", "--wait", "--wait-timeout", "30", agent_id, "ping")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    assert [(x["type"], x["record"].get("status")) for x in lines] == [
        ("command", None),
        ("response", "DELIVERED"),
        ("response", "SUCCEEDED"),
    ]
    assert len({x["record"]["commandId"] for x in lines}) == 1


def test_unreachable_kafka_exits_69(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "ctl.yaml", {"kafka": {"bootstrap_servers": "127.0.0.1:1"}})
    started = time.monotonic()
    result = monitorctl(config, "agents", timeout=60)
    assert result.returncode == 69
    [line] = result.stderr.strip().splitlines()  # one line, no librdkafka chatter
    assert line.startswith("monitorctl: Kafka unavailable: cannot read metadata of topic 'agent-status': "), line
    assert time.monotonic() - started < 30


# -- agents and tail against real processes ------------------------------------------------------


@pytest.fixture
def streaming(kafka: KafkaBroker, tmp_path: Path) -> Iterator[tuple[Proc, str, Proc]]:
    """A real monitord and a real mock agent streaming to it until stopped."""
    server, address = start_monitord(tmp_path, kafka.bootstrap)
    agent_id = unique("ctl-agent")
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.2)
    yield server, agent_id, agent


def agent_rows(config: Path, agent_id: str, *flags: str) -> list[dict[str, Any]]:
    result = monitorctl(config, "agents", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return [x for x in json_lines(result.stdout) if x["record"]["agentId"] == agent_id]


def wait_for_state(config: Path, agent_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = agent_rows(config, agent_id, "--all")
        if rows and rows[0]["record"]["state"] == state:
            return rows[0]
        time.sleep(0.3)
    raise AssertionError(f"agent {agent_id} not {state} within {timeout}s: {rows}")


def test_agents_shows_connected_then_disconnected(
    kafka: KafkaBroker, tmp_path: Path, streaming: tuple[Proc, str, Proc]
) -> None:
    server, agent_id, agent = streaming
    config = ctl_config(tmp_path, kafka.bootstrap)
    row = wait_for_state(config, agent_id, "CONNECTED")
    assert row["type"] == "agent" and row["record"]["agentVersion"] and 0 <= row["age_seconds"] < 60
    server_id = row["record"]["serverId"]
    table = monitorctl(config, "agents")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["AGENT", "STATE", "SERVER", "HOST", "VERSION", "SINCE", "REASON"]
    [line] = [line for line in table.stdout.splitlines() if line.startswith(agent_id + " ")]
    assert line.split()[1:3] == ["CONNECTED", server_id]

    assert agent.stop() == 0
    row = wait_for_state(config, agent_id, "DISCONNECTED")
    assert row["record"]["reason"] == "goodbye"
    assert agent_rows(config, agent_id) == []  # without --all only current agents are listed
    everything = monitorctl(config, "agents", "--all")
    [line] = [line for line in everything.stdout.splitlines() if line.startswith(agent_id + " ")]
    assert line.split()[1] == "DISCONNECTED" and line.endswith("goodbye")
    server.stop()


def test_tail_prints_records_of_one_agent(
    kafka: KafkaBroker, tmp_path: Path, streaming: tuple[Proc, str, Proc]
) -> None:
    _server, agent_id, agent = streaming
    config = ctl_config(tmp_path, kafka.bootstrap)
    result = monitorctl(config, "tail", "--agent", agent_id, "--count", "3", "--from-beginning", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("]")[0] for line in lines] == [f"[{agent_id} #{n}" for n in (1, 2, 3)]
    assert all(" CPU " in line and "| Memory " in line for line in lines)

    # From the end: only records produced after tail started (the agent keeps streaming).
    result = monitorctl(config, "tail", "--json", "--agent", agent_id, "--count", "2", timeout=60)
    assert result.returncode == 0, result.stderr
    sequences = [int(x["record"]["sequence"]) for x in json_lines(result.stdout)]
    assert len(sequences) == 2 and sequences[0] > 3 and sequences[1] == sequences[0] + 1
    assert all(x["type"] == "metrics" for x in json_lines(result.stdout))
    agent.stop()

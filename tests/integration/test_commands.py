"""Commands end to end: Kafka `commands` -> monitord -> real agent process -> `command-responses`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitoring_testsupport import (
    BIN,
    KafkaBroker,
    Proc,
    command_responses,
    free_port,
    produce_command,
    start_agent,
    start_monitord,
    statuses,
    unique,
)

pytestmark = pytest.mark.kafka

ARGV_ECHO = "import sys, json; print(json.dumps(sys.argv[1:]))"


def command_config(tmp: Path) -> dict[str, Any]:
    """The allow-list the test agents run with."""
    return {
        "connection": {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0},
        "commands": {
            "output_limit_bytes": 1000,
            "kill_grace_seconds": 1,
            "definitions": {
                "argv-echo": {
                    "argv": [sys.executable, "-c", ARGV_ECHO, "{a}", "{b}"],
                    "params": [{"name": "a"}, {"name": "b", "allow_option_like": True, "allow_dotdot": True}],
                },
                "strict-path": {"argv": ["/bin/ls", "{path}"], "params": [{"name": "path", "pattern": "/[a-z/]*"}]},
                "make-marker": {"argv": ["/bin/sh", "-c", f"echo ran >> {tmp}/marker"]},
                "spawn-and-hang": {
                    "argv": ["/bin/sh", "-c", f"sleep 300 & echo $! > {tmp}/child.pid; sleep 300"],
                    "timeout_seconds": 1,
                },
                "big-output": {
                    "argv": [
                        "/bin/sh",
                        "-c",
                        "head -c 5000 /dev/zero | tr '\\0' A; head -c 5000 /dev/zero | tr '\\0' C",
                    ]
                },
                "fail": {"argv": ["/bin/sh", "-c", "echo oops >&2; exit 3"]},
            },
        },
    }


@dataclass
class Setup:
    kafka: KafkaBroker
    server: Proc
    address: str
    agent_id: str
    agent: Proc
    tmp: Path

    def run(self, command: str, *args: str, **fields: Any) -> list[Any]:
        command_id = produce_command(self.kafka.bootstrap, self.agent_id, command, *args, **fields)
        return command_responses(self.kafka.bootstrap, self.agent_id, command_id)


@pytest.fixture(scope="module")
def setup(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One monitord and one connected agent shared by the single-agent command tests."""
    tmp = tmp_path_factory.mktemp("commands")
    server, address = start_monitord(tmp, kafka.bootstrap, reap=False, wait_commands=True)
    agent_id = unique("cmd-agent")
    agent = start_agent(tmp, address, agent_id, iterations=0, interval=1.0, config=command_config(tmp), reap=False)
    try:
        server.wait_agents(1)
        yield Setup(kafka, server, address, agent_id, agent, tmp)
    finally:
        agent.stop()
        server.stop()


def test_ping_round_trip(setup: Setup) -> None:
    responses = setup.run("ping")
    assert statuses(responses) == ["DELIVERED", "SUCCEEDED"]
    final = responses[-1]
    assert final.stdout == "pong" and final.reported_by == "agent" and final.agent_id == setup.agent_id
    assert final.HasField("started_at") and final.HasField("finished_at")


def test_builtins_info_and_set_interval(setup: Setup) -> None:
    info = json.loads(setup.run("info")[-1].stdout)
    assert info["agent_id"] == setup.agent_id and info["version"] and len(info["config_hash"]) == 16
    assert "argv-echo" in info["commands"]["allowed"] and info["spool"]["depth"] >= 0
    assert statuses(setup.run("set-interval", "abc")) == ["REJECTED"]
    final = setup.run("set-interval", "0.5")[-1]
    assert final.stdout == "interval 0.5s (was 1s)"
    assert json.loads(setup.run("info")[-1].stdout)["interval_seconds"] == 0.5
    setup.run("set-interval", "1")


def test_unconfigured_command_is_rejected_and_nothing_runs(setup: Setup) -> None:
    responses = setup.run("make-marker-now")  # not configured (only make-marker is)
    assert statuses(responses) == ["REJECTED"]
    assert "not configured" in responses[0].message
    assert not (setup.tmp / "marker").exists()
    assert statuses(setup.run("shell", "touch", str(setup.tmp / "marker"))) == ["REJECTED"]  # allow_shell is off
    assert not (setup.tmp / "marker").exists()


def test_metacharacters_reach_the_program_literally(setup: Setup) -> None:
    nasty = ["; rm -rf / $(id) `uname` | cat && echo pwned > /tmp/x", "--opt=../../etc/passwd *"]
    final = setup.run("argv-echo", *nasty)[-1]
    assert statuses([final]) == ["SUCCEEDED"]
    assert json.loads(final.stdout) == nasty


def test_template_validation_rejects_per_parameter(setup: Setup) -> None:
    cases = {
        ("-la",): "option-like",
        ("/etc/../root",): "'..'",
        ("/ETC",): "does not match",
        ("/a", "/b"): "expects 1 argument",
    }
    for args, why in cases.items():
        responses = setup.run("strict-path", *args)
        assert statuses(responses) == ["REJECTED"] and why in responses[0].message, (args, responses)


def test_failure_carries_exit_code_and_stderr(setup: Setup) -> None:
    final = setup.run("fail")[-1]
    assert statuses([final]) == ["FAILED"] and final.exit_code == 3 and final.stderr == "oops\n"


def test_timeout_kills_the_whole_process_group(setup: Setup) -> None:
    responses = setup.run("spawn-and-hang")
    assert statuses(responses) == ["DELIVERED", "TIMED_OUT"]
    assert 0.9 < responses[-1].duration_seconds < 10
    child = int((setup.tmp / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child process {child} of the timed-out command is still alive")


def test_output_over_cap_keeps_head_and_tail(setup: Setup) -> None:
    final = setup.run("big-output")[-1]
    assert statuses([final]) == ["SUCCEEDED"] and final.stdout_truncated and not final.stderr_truncated
    assert final.stdout.startswith("A" * 500) and final.stdout.endswith("C" * 500)
    assert "[... 9000 bytes truncated ...]" in final.stdout


def test_malformed_records_are_answered_invalid_and_consumer_survives(setup: Setup) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": setup.kafka.bootstrap})
    bad_id = unique("bad")
    producer.produce("commands", key=setup.agent_id.encode(), value=b"{not json")
    producer.produce(
        "commands",
        key=setup.agent_id.encode(),
        value=json.dumps({"commandId": bad_id, "agentId": setup.agent_id}).encode(),
    )
    producer.flush(10)
    responses = command_responses(setup.kafka.bootstrap, setup.agent_id, bad_id)
    assert statuses(responses) == ["INVALID"] and "no command name" in responses[0].message
    assert statuses(setup.run("ping")) == ["DELIVERED", "SUCCEEDED"]  # still consuming
    setup.server.wait_for(r"Invalid command record")


def test_offline_agent_gets_command_when_it_connects_or_expired(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, wait_commands=True)
    late, absent = unique("late"), unique("absent")
    waiting = produce_command(kafka.bootstrap, late, "ping", ttlSeconds=60)
    expiring = produce_command(kafka.bootstrap, absent, "ping", ttlSeconds=2)
    server.wait_for(rf"Command {waiting} \(ping\) for agent '{late}' held")
    agent = start_agent(tmp_path, address, late, iterations=0, interval=1.0)
    assert statuses(command_responses(kafka.bootstrap, late, waiting)) == ["DELIVERED", "SUCCEEDED"]
    expired = command_responses(kafka.bootstrap, absent, expiring, timeout=20)
    assert statuses(expired) == ["EXPIRED"] and expired[0].reported_by.startswith("monitord:monitord-")
    agent.stop()


def test_a_command_read_again_after_a_restart_runs_once(kafka: KafkaBroker, tmp_path: Path) -> None:
    port = free_port()
    server, address = start_monitord(tmp_path, kafka.bootstrap, port=port, wait_commands=True)
    agent_id = unique("once")
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.5, config=command_config(tmp_path))
    server.wait_agents(1)
    command_id = produce_command(kafka.bootstrap, agent_id, "make-marker")
    assert statuses(command_responses(kafka.bootstrap, agent_id, command_id)) == ["DELIVERED", "SUCCEEDED"]
    server.signal(signal.SIGKILL)  # the agent loses its stream and reconnects to the new server
    server.wait(10)
    server2, _ = start_monitord(tmp_path, kafka.bootstrap, name="monitord-2", port=port, wait_commands=True)
    server2.wait_agents(1, timeout=30)
    produce_command(kafka.bootstrap, agent_id, "make-marker", command_id=command_id)  # the same command again
    # The restarted server knows from its replay that this command ended: it never goes out again.
    server2.wait_for(rf"Command {command_id} read again \(already SUCCEEDED\): not delivered again")
    assert (tmp_path / "marker").read_text() == "ran\n"
    responses = command_responses(kafka.bootstrap, agent_id, command_id)
    assert statuses(responses) == ["DELIVERED", "SUCCEEDED"]
    agent.stop()
    server2.stop()


@pytest.mark.parametrize("holder", [0, 1])
def test_two_servers_deliver_exactly_once(kafka: KafkaBroker, tmp_path: Path, holder: int) -> None:
    servers = [start_monitord(tmp_path, kafka.bootstrap, name=f"monitord-{i}", wait_commands=True) for i in range(2)]
    agent_id = unique(f"two-{holder}")
    agent = start_agent(
        tmp_path, servers[holder][1], agent_id, iterations=0, interval=1.0, config=command_config(tmp_path)
    )
    servers[holder][0].wait_agents(1)
    command_id = produce_command(kafka.bootstrap, agent_id, "make-marker", ttlSeconds=4)
    responses = command_responses(kafka.bootstrap, agent_id, command_id, settle=6)  # past the ttl: no late EXPIRED
    assert statuses(responses) == ["DELIVERED", "SUCCEEDED"]
    assert (tmp_path / "marker").read_text() == "ran\n"
    other = servers[1 - holder][0]
    other.wait_for(rf"Command {command_id} \(make-marker\) for agent '{agent_id}' held")
    assert f"→ Pushed command {command_id}" in servers[holder][0].text()
    assert f"→ Pushed command {command_id}" not in other.text()
    agent.stop()


@pytest.mark.parametrize(
    ("argv", "status"),
    [(["ping"], 0), (["fail"], 1), (["spawn-and-hang"], 124), (["no-such-command"], 126)],
)
def test_monitorctl_send_wait_mirrors_the_real_outcome(setup: Setup, argv: list[str], status: int) -> None:
    """`monitorctl send --wait` against the real monitord and agent: its exit status is the command's fate."""
    result = subprocess.run(
        [
            str(BIN / "monitorctl"),
            "--kafka-bootstrap",
            setup.kafka.bootstrap,
            "send",
            "--wait",
            "--wait-timeout",
            "30",
            setup.agent_id,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == status, result.stdout + result.stderr
    if argv == ["ping"]:
        assert "pong" in result.stdout


def test_monitorctl_send_wait_expired_for_absent_agent(setup: Setup) -> None:
    result = subprocess.run(
        [
            str(BIN / "monitorctl"),
            "--kafka-bootstrap",
            setup.kafka.bootstrap,
            "send",
            "--wait",
            "--ttl",
            "2",
            "--wait-timeout",
            "30",
            unique("nobody"),
            "ping",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 75, result.stdout + result.stderr


def test_analysis_rule_fires_once_per_cooldown_against_a_real_agent(setup: Setup, tmp_path: Path) -> None:
    """A rule that matches every sample sends one command per cooldown; the real answer is correlated."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: always\n    metric: cpu.percent\n    op: '>='\n    threshold: 0\n"
        "    for_samples: 2\n    command: info\n    cooldown_seconds: 3600\n"
    )
    analyzer = Proc(
        "analyzer",
        [
            str(BIN / "monitor-analyzer"),
            "--kafka-bootstrap",
            setup.kafka.bootstrap,
            "--group",
            unique("rules"),
            "--agent",
            setup.agent_id,
            "--rules",
            str(rules),
        ],
        tmp_path / "analyzer.log",
    ).start()
    analyzer.wait_for(rf"RULE always on {setup.agent_id}: command \S+ → SUCCEEDED", timeout=60)
    time.sleep(5)  # several more matching samples arrive within the cooldown
    assert analyzer.text().count("RULE always fired") == 1, analyzer.text()
    analyzer.stop()

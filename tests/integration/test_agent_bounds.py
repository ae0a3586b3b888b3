"""The agent bounds what it accepts from the command stream: commands with 900 KB ids, 2000-character
names and too many arguments, produced straight to the ``commands`` topic, leave its state small and
its log short, a normal ``ping`` still succeeds, and an ``--iterations`` agent still ends with exit 0.

monitord refuses such commands itself (INVALID); here its limits are opened as far as its
configuration allows, so that everything but the ids (one fixed pattern) reaches the agent, whose
own bounds must hold. Under eleven classes of hostile commands at once the agent's peak RSS stays
within 2x its idle RSS (printed, with the case count of each class)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import (
    KafkaBroker,
    command_responses,
    produce_command,
    read_records,
    rss_kib,
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


FINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "EXPIRED", "INVALID"}
#: The agent's own definition for the burst: a command that stays running while the burst arrives.
NAP = {"commands": {"definitions": {"nap": {"argv": ["/bin/sleep", "3"], "description": "holds a slot"}}}}
BURST = 1000
NAPS = 100


class Attack:
    """Hostile commands for one agent, by class; each class counted ("hostile <class>: N cases")."""

    def __init__(self, bootstrap: str, agent_id: str) -> None:
        self.agent_id = agent_id
        self.producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_000_000})
        self.ids: dict[str, list[str]] = {}

    def run(self, name: str, count: int, case: Callable[[int], dict[str, Any]]) -> None:
        ids = self.ids.setdefault(name, [])
        for i in range(count):
            command_id = unique(f"h{len(self.ids)}")
            body = {"commandId": command_id, "agentId": self.agent_id, **case(i)}
            self.producer.produce("commands", key=self.agent_id.encode(), value=json.dumps(body).encode())
            self.producer.poll(0)
            ids.append(command_id)
        assert self.producer.flush(60) == 0
        print(f"hostile {name}: {count} cases")


def answers(bootstrap: str, agent_id: str, ids: set[str], timeout: float = 120) -> dict[str, list[Any]]:
    """Every response to ``ids`` (command-responses, key ``agent_id``), once each has a final one."""

    def done(found: list[Any]) -> bool:
        final = {r.message.command_id for r in found if pb.CommandStatus.Name(r.message.status) in FINAL}
        return ids <= final

    by_id: dict[str, list[Any]] = {}
    found = read_records(
        bootstrap, "command-responses", [agent_id], expect=10**9, timeout=timeout, settle=0, stop=done, tail=1.0
    )
    for record in found:
        message: Any = record.message
        if message.command_id in ids:
            by_id.setdefault(message.command_id, []).append(message)
    missing = ids - {i for i, rs in by_id.items() if statuses(rs)[-1] in FINAL}
    assert not missing, f"{len(missing)} commands unanswered, e.g. {sorted(missing)[:3]}"
    return by_id


def final(by_id: dict[str, list[Any]], ids: list[str]) -> list[tuple[str, str]]:
    """(final status, message) of each of ``ids``."""
    return [(statuses(by_id[i])[-1], by_id[i][-1].message) for i in ids]


def test_the_agents_memory_stays_within_2x_idle_under_every_attack_class(kafka: KafkaBroker, tmp_path: Path) -> None:
    # monitord holds at most max_pending_per_agent commands for one agent (the oldest beyond end EXPIRED):
    # opened too, so that the whole burst reaches the agent at once.
    limits = {"commands": {**OPEN_LIMITS["commands"], "max_pending_per_agent": 100_000}}
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=limits, wait_commands=True)
    agent_id = unique("rss")
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.5, config=json.loads(json.dumps(NAP)))
    server.wait_agents(1)
    warm = produce_command(kafka.bootstrap, agent_id, "ping")
    assert statuses(command_responses(kafka.bootstrap, agent_id, warm, timeout=60))[-1] == "SUCCEEDED", agent.text()
    time.sleep(5)  # idle: connected, collecting, one command answered
    idle = rss_kib(agent.pid, "VmRSS")

    attack = Attack(kafka.bootstrap, agent_id)
    produce_hostile(kafka.bootstrap, agent_id)  # 900 KB ids (monitord drops them), long names, 500 args
    print(f"hostile huge ids, long names, many args: {HUGE_IDS + LONG_NAMES + 1} cases")
    attack.run("name over the bound", 200, lambda i: {"command": "p" * (129 + i * 19)})
    attack.run("requested_by over the bound", 100, lambda i: {"command": "ping", "requestedBy": "r" * (257 + i * 38)})
    attack.run(
        "requested_by huge (monitord's refusal)", 20, lambda i: {"command": "ping", "requestedBy": "r" * 500_000}
    )
    attack.run("args at the bound", 20, lambda i: {"command": "ping", "args": ["a" * 4096] * 64})
    attack.run("args over the bound", 60, lambda i: {"command": "ping", "args": ["a" * (4097 + i * 15_000)]})
    attack.run("args count over the bound", 20, lambda i: {"command": "ping", "args": ["1"] * (65 + i * 500)})
    controls = ["\x1b[2J\x1b[31mping", "ping\n✓ Command forged", "\x07\x08\x00ping", "\u202eping", "\r\x1b]0;pwned\x07"]
    attack.run(
        "control characters in name and requested_by",
        100,
        lambda i: {"command": controls[i % len(controls)], "requestedBy": controls[(i + 1) % len(controls)]},
    )
    unicode = ["pïng", "пинг", "𝕡𝕚𝕟𝕘" * 32, "ping\u200b", "🏓" * 128, "🏓" * 129]
    attack.run("unicode names", 60, lambda i: {"command": unicode[i % len(unicode)], "requestedBy": "ü" * 256})
    attack.run(f"burst of {BURST} unknown commands at once", BURST, lambda i: {"command": f"nope-{i}"})
    attack.run(f"burst of {NAPS} beyond max_concurrent", NAPS, lambda i: {"command": "nap"})

    by_id = answers(kafka.bootstrap, agent_id, {i for ids in attack.ids.values() for i in ids})
    after = produce_command(kafka.bootstrap, agent_id, "ping")
    assert statuses(command_responses(kafka.bootstrap, agent_id, after, timeout=60)) == ["DELIVERED", "SUCCEEDED"]
    peak = rss_kib(agent.pid, "VmHWM")
    log_bytes = (tmp_path / f"agent-{agent_id}.log").stat().st_size
    cases = sum(len(ids) for ids in attack.ids.values()) + HUGE_IDS + LONG_NAMES + 1
    print(
        f"agent under {cases} hostile commands: RSS idle {idle} KiB, peak {peak} KiB ({peak / idle:.2f}x); log {log_bytes} B"
    )

    rejected = {"REJECTED", "INVALID"}  # INVALID: monitord's own refusal (beyond even its opened limits)
    for name in (
        "name over the bound",
        "requested_by over the bound",
        "args over the bound",
        "args count over the bound",
    ):
        assert {status for status, _ in final(by_id, attack.ids[name])} <= rejected, name
    assert {s for s, _ in final(by_id, attack.ids["requested_by huge (monitord's refusal)"])} <= rejected
    assert set(final(by_id, attack.ids["args at the bound"])) == {("REJECTED", "ping takes no arguments")}
    for name in ("control characters in name and requested_by", "unicode names"):
        assert {s for s, _ in final(by_id, attack.ids[name])} == {"REJECTED"}, name
    assert {s for s, _ in final(by_id, attack.ids[f"burst of {BURST} unknown commands at once"])} == {"REJECTED"}
    naps = final(by_id, attack.ids[f"burst of {NAPS} beyond max_concurrent"])
    ran = [s for s, _ in naps if s == "SUCCEEDED"]
    assert 1 <= len(ran) <= 4 and len(ran) + naps.count(("REJECTED", "too many commands running (limit 4)")) == NAPS

    text = agent.text()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "пинг" not in text
    assert "\n✓ Command forged" not in text  # no forged log line
    assert log_bytes < MAX_LOG_BYTES and text.count("rejected") <= 200  # within the budget of refusals
    assert state_bytes(tmp_path / f"state-{agent_id}") < MAX_STATE_BYTES
    assert peak <= 2 * idle, (idle, peak)
    agent.stop()
    server.stop()
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=10**9, timeout=15, settle=0)
    seqs = sorted(set(sequences(found, agent_id)))
    assert len(seqs) >= 10 and seqs == list(range(1, seqs[-1] + 1)), seqs[-5:]  # every metric, none lost

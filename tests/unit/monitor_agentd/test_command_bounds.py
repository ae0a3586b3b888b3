"""Out-of-bounds commands: never journaled, remembered or run; REJECTED if the id can be answered."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from monitor_agentd import command_bounds
from monitor_agentd.builtins import Builtins
from monitor_agentd.command_bounds import DroppedCommands, problem, valid_id
from monitor_agentd.commands import CommandRunner
from monitor_agentd.config import CommandsSection
from monitor_agentd.journal import CommandJournal
from monitoring.v1 import monitoring_pb2 as pb


class Responses:
    def __init__(self) -> None:
        self.sent: list[pb.CommandResponseMessage] = []

    def add_response(self, response: pb.CommandResponseMessage) -> None:
        self.sent.append(response)


class Collection:
    collected = 0

    def collect_now(self) -> int:
        self.collected += 1
        return self.collected

    def set_interval(self, seconds: float) -> float:
        return 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path: Path, clock: Clock | None = None) -> tuple[CommandRunner, Responses, CommandJournal, Collection]:
    journal = CommandJournal(tmp_path / "journal")
    journal.load()
    responses, collection = Responses(), Collection()
    runner = CommandRunner(
        CommandsSection(),
        "a1",
        Builtins(collection, dict),
        responses,
        journal,
        dropped=DroppedCommands(clock=clock or Clock()),
    )
    return runner, responses, journal, collection


def journal_bytes(journal: CommandJournal) -> int:
    assert journal.path is not None
    return journal.path.stat().st_size if journal.path.exists() else 0


@pytest.mark.parametrize(
    ("command_id", "valid"),
    [
        ("c1", True),
        ("0f3a9c2e-7d1b-4c55-9a1e-2b6f0c8d4e71", True),
        ("auto-0-17", True),
        ("rule:disk-full@host.example_1", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-leading-dash", False),
        ("has space", False),
        ("new\nline", False),
        ("slash/", False),
        ("ümlaut", False),
    ],
)
def test_the_id_pattern(command_id: str, valid: bool) -> None:
    assert valid_id(command_id) is valid


def test_invalid_ids_are_dropped_unanswered_and_not_stored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner, responses, journal, collection = setup(tmp_path)
    runner.submit(pb.CommandMessage(command_id="ok1", command="ping"))
    size = journal_bytes(journal)
    caplog.set_level(logging.WARNING, "monitor_agentd")
    for n in range(50):
        runner.submit(pb.CommandMessage(command_id=f"\x1b[31m{n}" + "x" * 900_000, command="collect"))
    runner.submit(pb.CommandMessage(command_id="", command="collect"))
    assert [r.command_id for r in responses.sent] == ["ok1", "ok1"]
    assert collection.collected == 0 and journal_bytes(journal) == size
    assert not journal.seen("\x1b[31m0" + "x" * 900_000)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # one line for all 51
    assert "invalid command_id '\\x1b[31m0xxx" in line and "…(+899910 chars)' dropped" in line
    assert len(line) < 300
    journal.close()


def test_the_drop_warning_repeats_after_its_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    dropped = DroppedCommands(clock=clock, every=60)
    caplog.set_level(logging.WARNING, "monitor_agentd")
    for _ in range(3):
        dropped.drop(pb.CommandMessage(command_id="bad id"))
    clock.now += 60
    dropped.drop(pb.CommandMessage(command_id="bad id"))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2 and "(2 more like it suppressed)" in lines[1]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"command": "p" * 129}, "command name longer than 128 characters"),
        ({"command": "ping", "requested_by": "o" * 257}, "requested_by longer than 256 characters"),
        ({"command": "echo", "args": ["a"] * 65}, "65 arguments (limit 64)"),
        ({"command": "echo", "args": ["a" * 4097]}, "an argument is longer than 4096 bytes"),
        ({"command": "echo", "args": ["ü" * 2049]}, "an argument is longer than 4096 bytes"),
    ],
)
def test_out_of_bounds_is_rejected_unstored(tmp_path: Path, fields: dict[str, object], reason: str) -> None:
    runner, responses, journal, collection = setup(tmp_path)
    size = journal_bytes(journal)
    runner.submit(pb.CommandMessage(command_id="c1", **fields))  # type: ignore[arg-type]
    (answer,) = responses.sent
    assert (answer.command_id, answer.status, answer.message) == ("c1", pb.REJECTED, reason)
    assert len(answer.command) <= 128 and len(answer.requested_by) <= 256  # monitord can store it
    assert journal_bytes(journal) == size and not journal.seen("c1") and journal.unacknowledged() == []
    assert runner.running == 0 and collection.collected == 0
    journal.close()


def test_within_bounds_is_not_a_problem() -> None:
    command = pb.CommandMessage(command_id="c1", command="p" * 128, requested_by="o" * 256, args=["a" * 4096] * 64)
    assert problem(command, CommandsSection()) is None
    assert command_bounds.trimmed(command, CommandsSection()).command == "p" * 128


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"command": "p" * 9}, "command name longer than 8 characters"),
        ({"command": "ping", "requested_by": "o" * 5}, "requested_by longer than 4 characters"),
        ({"command": "echo", "args": ["a"] * 3}, "3 arguments (limit 2)"),
        ({"command": "echo", "args": ["a" * 17]}, "an argument is longer than 16 bytes"),
    ],
)
def test_the_bounds_are_the_configured_ones(fields: dict[str, object], reason: str) -> None:
    bounds = CommandsSection(max_name_chars=8, max_requested_by_chars=4, max_args=2, max_arg_bytes=16)
    assert problem(pb.CommandMessage(command_id="c1", **fields), bounds) == reason  # type: ignore[arg-type]
    at_bound = pb.CommandMessage(command_id="c1", command="p" * 8, requested_by="o" * 4, args=["a" * 16] * 2)
    assert problem(at_bound, bounds) is None


def test_a_reload_applies_new_bounds_to_the_next_command(tmp_path: Path) -> None:
    runner, responses, journal, _ = setup(tmp_path)
    runner.reconfigure(CommandsSection(max_name_chars=3))
    runner.submit(pb.CommandMessage(command_id="c1", command="ping"))
    (answer,) = responses.sent
    assert (answer.status, answer.message, answer.command) == (pb.REJECTED, "command name longer than 3 characters", "")
    journal.close()


def test_a_flood_of_rejections_costs_a_few_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner, responses, journal, _ = setup(tmp_path)
    caplog.set_level(logging.INFO, "monitor_agentd")
    for n in range(1000):
        runner.submit(pb.CommandMessage(command_id=f"c{n}", command="p" * 200, requested_by="\x1b[2J" * 100))
    assert len(responses.sent) == 1000 and all(r.status == pb.REJECTED and not r.requested_by for r in responses.sent)
    assert len(caplog.records) == command_bounds.REJECT_WARNINGS
    journal.close()


def test_a_rejected_unstored_answer_keeps_a_short_name(tmp_path: Path) -> None:
    runner, responses, journal, _ = setup(tmp_path)
    runner.submit(pb.CommandMessage(command_id="c1", command="ping", requested_by="ops", args=["a"] * 100))
    assert (responses.sent[0].command, responses.sent[0].requested_by) == ("ping", "ops")
    journal.close()


def test_bounds_are_checked_before_anything_runs(tmp_path: Path) -> None:
    async def main() -> None:
        runner, responses, journal, _ = setup(tmp_path)
        runner.submit(pb.CommandMessage(command_id="c1", command="ping" + "g" * 200))
        runner.submit(pb.CommandMessage(command_id="c1", command="ping"))  # never remembered: runs
        assert [pb.CommandStatus.Name(r.status) for r in responses.sent] == ["REJECTED", "DELIVERED", "SUCCEEDED"]
        journal.close()

    asyncio.run(main())


def test_log_lines_show_server_values_escaped_and_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner, _, journal, _ = setup(tmp_path)
    caplog.set_level(logging.INFO, "monitor_agentd")
    runner.submit(pb.CommandMessage(command_id="c1", command="rm\x1b[2J" + "x" * 100))
    runner.submit(pb.CommandMessage(command_id="c1", command="rm\x1b[2J" + "x" * 100))  # the duplicate line
    text = caplog.text
    assert "\x1b" not in text and "rm\\x1b[2J" in text and "…(+10 chars)" in text
    journal.close()


def test_unknown_commands_are_logged_escaped_within_the_same_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner, responses, journal, _ = setup(tmp_path)
    caplog.set_level(logging.INFO, "monitor_agentd")
    for n in range(200):
        runner.submit(pb.CommandMessage(command_id=f"u{n}", command="p\u00efng\u202e\x1b[2J\n", requested_by="\x07"))
    assert [r.status for r in responses.sent] == [pb.REJECTED] * 200  # each one answered (and journaled)
    assert journal.seen("u199")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == command_bounds.REJECT_WARNINGS
    assert all(line.removeprefix("✗ ").isascii() and line.isprintable() for line in lines)
    assert "(p\\xefng\\u202e\\x1b[2J\\n) rejected: unknown command 'p\\xefng\\u202e\\x1b[2J\\n'" in lines[0]
    journal.close()

"""CommandRunner: de-duplicate, resolve against the allow-list, run, report exactly one final response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from monitor_agentd.builtins import Builtins
from monitor_agentd.commands import CommandRunner
from monitor_agentd.config import CommandSpec, CommandsSection, ParamSpec
from monitor_agentd.errors import AgentError, CommandRefused
from monitor_agentd.journal import CommandJournal
from monitoring.v1 import monitoring_pb2 as pb

WAIT = 10.0
ECHO = CommandSpec(argv=("/bin/echo", "hello {name}"), params=(ParamSpec(name="name", pattern="[a-z.]+"),))
FAIL = CommandSpec(argv=("/bin/sh", "-c", "echo no >&2; exit 2"))
SLOW = CommandSpec(argv=("/bin/sleep", "30"), timeout_seconds=0.2)
MISSING = CommandSpec(argv=("/nonexistent/tool",))


class Responses:
    """The outbound queue, as far as commands are concerned."""

    def __init__(self) -> None:
        self.sent: list[pb.CommandResponseMessage] = []
        self._changed = asyncio.Event()

    def add_response(self, response: pb.CommandResponseMessage) -> None:
        self.sent.append(response)
        self._changed.set()

    def statuses(self, command_id: str) -> list[str]:
        return [pb.CommandStatus.Name(r.status) for r in self.sent if r.command_id == command_id]

    def final(self, command_id: str) -> pb.CommandResponseMessage:
        return [r for r in self.sent if r.command_id == command_id][-1]

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


class Collection:
    def __init__(self) -> None:
        self.interval = 10.0
        self.collected = 0

    def collect_now(self) -> int:
        self.collected += 1
        return 41 + self.collected

    def set_interval(self, seconds: float) -> float:
        old, self.interval = self.interval, seconds
        return old


def command(command_id: str, name: str, *args: str, timeout_seconds: int = 0) -> pb.CommandMessage:
    return pb.CommandMessage(
        command_id=command_id, command=name, args=args, requested_by="ops", timeout_seconds=timeout_seconds
    )


def runner(
    responses: Responses, journal: CommandJournal | None = None, **cfg: object
) -> tuple[CommandRunner, Collection]:
    definitions = MappingProxyType({"echo": ECHO, "fail": FAIL, "slow": SLOW, "missing": MISSING})
    section = CommandsSection(definitions=definitions, kill_grace_seconds=0.1, **cfg)  # type: ignore[arg-type]
    collection = Collection()
    builtins = Builtins(collection, lambda: {"agent_id": "a1"})
    return CommandRunner(section, "a1", builtins, responses, journal or CommandJournal(None)), collection


def scenario(body: Callable[[Responses], object]) -> None:
    async def main() -> None:
        await body(Responses())  # type: ignore[misc]

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_refused_is_an_agent_error() -> None:
    assert issubclass(CommandRefused, AgentError) and not CommandRefused.retriable


def test_builtins_answer_at_once() -> None:
    async def body(responses: Responses) -> None:
        commands, collection = runner(responses)
        commands.submit(command("c1", "ping"))
        commands.submit(command("c2", "collect"))
        commands.submit(command("c3", "set-interval", "2.5"))
        commands.submit(command("c4", "info"))
        assert responses.statuses("c1") == ["DELIVERED", "SUCCEEDED"]
        ping = responses.final("c1")
        assert ping.stdout == "pong" and ping.requested_by == "ops" and ping.reported_by == "agent"
        assert ping.agent_id == "a1" and ping.duration_seconds >= 0
        assert responses.final("c2").stdout == "collected metrics #42" and collection.collected == 1
        assert responses.final("c3").stdout == "interval 2.5s (was 10s)" and collection.interval == 2.5
        assert json.loads(responses.final("c4").stdout) == {"agent_id": "a1"}

    scenario(body)


@pytest.mark.parametrize(
    ("name", "args", "reason"),
    [
        ("ping", ["x"], "ping takes no arguments"),
        ("set-interval", [], "set-interval expects one number of seconds"),
        ("set-interval", ["soon"], "set-interval expects one number of seconds"),
        ("set-interval", ["0.001"], "set-interval: seconds must be between 0.05 and 86400"),
        ("shell", ["id"], "unknown command 'shell' (not configured on this agent)"),
        ("rm", ["-rf"], "unknown command 'rm' (not configured on this agent)"),
        ("echo", [], "expects 1 argument(s) (NAME), got 0"),
        ("echo", ["-n"], "argument name: option-like values (starting with '-') are not allowed"),
        ("echo", ["a..b"], "argument name: '..' is not allowed"),
        ("echo", ["ABC"], "argument name: does not match '[a-z.]+'"),
        ("echo", ["a\x00"], "argument name: contains a NUL byte"),
        ("echo", ["a" * 300], "argument name: longer than 256 characters"),
    ],
)
def test_not_allowed_is_rejected_and_nothing_runs(name: str, args: list[str], reason: str) -> None:
    async def body(responses: Responses) -> None:
        commands, collection = runner(responses)
        commands.submit(command("c1", name, *args))
        assert responses.statuses("c1") == ["REJECTED"]
        assert responses.final("c1").message == reason
        assert commands.running == 0 and collection.collected == 0 and collection.interval == 10.0

    scenario(body)


def test_programs_run_and_report_their_outcome() -> None:
    async def body(responses: Responses) -> None:
        commands, _ = runner(responses)
        commands.submit(command("ok", "echo", "world"))
        commands.submit(command("bad", "fail"))
        commands.submit(command("slow", "slow"))
        commands.submit(command("gone", "missing"))
        assert commands.running == 4
        await responses.until(lambda: all(len(responses.statuses(c)) == 2 for c in ("ok", "bad", "slow", "gone")))
        ok, bad, slow, gone = (responses.final(c) for c in ("ok", "bad", "slow", "gone"))
        assert ok.status == pb.SUCCEEDED and ok.stdout == "hello world\n" and ok.exit_code == 0
        assert (
            bad.status == pb.FAILED and bad.exit_code == 2 and bad.stderr == "no\n" and bad.message == "exit status 2"
        )
        assert slow.status == pb.TIMED_OUT and slow.message == "killed after 0.2s (process group terminated)"
        assert gone.status == pb.FAILED and gone.exit_code == 127 and gone.message.startswith("cannot start")
        assert commands.executed == 3  # the one that could not start is not counted
        await commands.close()
        assert commands.running == 0

    scenario(body)


def journal_at(path: Path) -> CommandJournal:
    journal = CommandJournal(path)
    journal.load()
    return journal


def test_duplicate_delivery_never_runs_twice_and_repeats_the_final(tmp_path: Path) -> None:
    async def body(responses: Responses) -> None:
        journal = journal_at(tmp_path / "journal")
        commands, collection = runner(responses, journal)
        commands.submit(command("c1", "collect"))
        commands.submit(command("c1", "collect"))
        assert collection.collected == 1
        assert responses.statuses("c1") == ["DELIVERED", "SUCCEEDED", "SUCCEEDED"]
        journal.close()
        # After a restart the final comes from the journal on disk.
        again, collection = runner(responses, journal_at(tmp_path / "journal"))
        again.submit(command("c1", "collect"))
        assert collection.collected == 0
        assert responses.statuses("c1") == ["DELIVERED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]

    scenario(body)


def test_duplicate_of_a_running_command_is_answered_delivered_again() -> None:
    async def body(responses: Responses) -> None:
        commands, _ = runner(responses)
        commands.submit(command("c1", "slow", timeout_seconds=30))
        commands.submit(command("c1", "slow", timeout_seconds=30))
        assert responses.statuses("c1") == ["DELIVERED", "DELIVERED"] and commands.running == 1
        await commands.close()

    scenario(body)


def test_command_running_at_a_crash_is_answered_failed_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(responses: Responses) -> None:
        commands, _ = runner(responses, journal_at(tmp_path / "journal"))
        commands.submit(command("c1", "slow", timeout_seconds=30))
        commands.submit(command("c2", "echo", "x"))
        await responses.until(lambda: len(responses.statuses("c2")) == 2)
        # The agent dies here: nothing more is written (close() only cancels, as a kill would).
        await commands.close()
        later = Responses()
        journal = journal_at(tmp_path / "journal")
        restarted, _ = runner(later, journal)
        restarted.finish_interrupted()
        assert later.statuses("c1") == ["FAILED"] and later.statuses("c2") == []
        failed = later.final("c1")
        assert failed.exit_code == -1 and failed.requested_by == "ops" and failed.command == "slow"
        assert failed.message.startswith("agent restarted while the command was running (accepted at ")
        assert failed.message.endswith("); its outcome is unknown")
        assert "Command journal: 1 command was running when the agent stopped (c1, slow): answered FAILED" in (
            caplog.text
        )
        restarted.submit(command("c1", "slow"))  # redelivered after the restart: the stored final, not a run
        assert later.statuses("c1") == ["FAILED", "FAILED"] and restarted.running == 0
        restarted.finish_interrupted()  # only once
        assert later.statuses("c1") == ["FAILED", "FAILED"]
        journal.close()
        assert journal_at(tmp_path / "journal").interrupted() == []

    scenario(body)


def test_without_id_ignored_and_expired_not_run() -> None:
    async def body(responses: Responses) -> None:
        commands, collection = runner(responses)
        commands.submit(command("", "collect"))
        assert responses.sent == [] and collection.collected == 0
        expired = command("c1", "collect")
        expired.expires_at.FromSeconds(1)
        commands.submit(expired)
        assert responses.statuses("c1") == ["EXPIRED"] and collection.collected == 0

    scenario(body)


def test_shell_only_when_allowed() -> None:
    async def body(responses: Responses) -> None:
        commands, _ = runner(responses, allow_shell=True)
        commands.submit(command("c1", "shell", "echo", "$((1+2))"))
        await responses.until(lambda: len(responses.statuses("c1")) == 2)
        assert responses.final("c1").stdout == "3\n"
        commands.reconfigure(CommandsSection())
        commands.submit(command("c2", "shell", "id"))
        assert responses.statuses("c2") == ["REJECTED"]

    scenario(body)


def test_concurrency_limit_and_close_cancels_running() -> None:
    async def body(responses: Responses) -> None:
        commands, _ = runner(responses, max_concurrent=1)
        commands.submit(command("c1", "slow", timeout_seconds=30))
        commands.submit(command("c2", "slow"))
        assert responses.statuses("c2") == ["REJECTED"]
        assert responses.final("c2").message == "too many commands running (limit 1)"
        await commands.close()
        assert commands.running == 0 and responses.statuses("c1") == ["DELIVERED"]

    scenario(body)


def test_requested_timeout_is_capped() -> None:
    async def body(responses: Responses) -> None:
        commands, _ = runner(responses, max_timeout_seconds=0.2)
        commands.submit(command("c1", "echo", "x", timeout_seconds=3600))
        commands.submit(command("c2", "slow", timeout_seconds=3600))
        await responses.until(lambda: len(responses.statuses("c2")) == 2)
        assert responses.final("c2").message == "killed after 0.2s (process group terminated)"
        await responses.until(lambda: len(responses.statuses("c1")) == 2)
        await commands.close()

    scenario(body)


def test_allow_shell_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    commands, _ = runner(Responses(), allow_shell=True)
    commands.reconfigure(CommandsSection())
    commands.reconfigure(CommandsSection(allow_shell=True))
    assert caplog.text.count("'shell' command runs arbitrary shell code") == 2

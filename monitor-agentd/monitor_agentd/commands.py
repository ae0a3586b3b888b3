"""Commands from the server: de-duplicate, resolve against the allow-list, validate, run, report.

Only three kinds of command exist: the built-ins (``ping``, ``collect``, ``set-interval``,
``info``), the named argv templates configured in agent.yaml, and -- only with
``commands.allow_shell: true`` -- ``shell``. Anything else is REJECTED and nothing runs.
Every accepted command gets a DELIVERED response, then exactly one final response -- also across a
restart of the agent: each response is journaled (:mod:`journal`, fsynced) before it is queued, so
a command that was running when the agent died is answered FAILED at the next start
(:meth:`CommandRunner.finish_interrupted`), and a duplicate delivery gets the latest known answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from monitor_agentd import command_bounds, executor
from monitor_agentd.config import BUILTIN_COMMANDS, SHELL_COMMAND, CommandsSection
from monitor_agentd.errors import CommandRefused
from monitor_agentd.journal import CommandJournal, Entry
from monitor_agentd.templates import bind
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import shown

log = logging.getLogger(__name__)

#: exit_code of the FAILED answer to a command that was running when the agent stopped.
EXIT_INTERRUPTED = -1


class BuiltinCommands(Protocol):
    """The built-in commands (config.BUILTIN_COMMANDS), as :mod:`monitor_agentd.builtins` implements them."""

    def check(self, name: str, args: Sequence[str]) -> None:
        """Raise :class:`CommandRefused` unless ``args`` are valid for built-in ``name``."""
        ...

    def run(self, name: str, args: Sequence[str]) -> str:
        """Run built-in ``name`` (already checked) and return its output."""
        ...


class ResponseSink(Protocol):
    """Where command responses go (the outbound queue)."""

    def add_response(self, response: pb.CommandResponseMessage) -> None:
        """Send ``response`` upstream, again after reconnects until acknowledged."""
        ...


def _command_of(entry: Entry) -> pb.CommandMessage:
    return pb.CommandMessage(command_id=entry.command_id, command=entry.command, requested_by=entry.requested_by)


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class CommandRunner:
    """Accepts CommandMessages from the stream and reports on them through the outbound queue."""

    def __init__(
        self,
        cfg: CommandsSection,
        agent_id: str,
        builtins: BuiltinCommands,
        responses: ResponseSink,
        journal: CommandJournal,
        *,
        dropped: command_bounds.DroppedCommands | None = None,
    ) -> None:
        self.cfg = cfg
        self._dropped = dropped or command_bounds.DroppedCommands()
        self._agent_id = agent_id
        self._builtins = builtins
        self._responses = responses
        self._journal = journal
        self._tasks: set[asyncio.Task[None]] = set()
        #: Programs run to completion (or timeout) since start (monitor_agentd_commands_executed).
        self.executed = 0
        if cfg.allow_shell:
            log.warning("commands.allow_shell is true: the 'shell' command runs arbitrary shell code from the server")

    def reconfigure(self, cfg: CommandsSection) -> None:
        """Reload: the new allow-list and limits apply to commands received from now on."""
        if cfg.allow_shell and not self.cfg.allow_shell:
            log.warning("commands.allow_shell is true: the 'shell' command runs arbitrary shell code from the server")
        self.cfg = cfg

    @property
    def running(self) -> int:
        """Programs executing now."""
        return len(self._tasks)

    def submit(self, command: pb.CommandMessage) -> None:
        """Handle one command from the server (never raises, never blocks).

        Out-of-bounds commands (:mod:`command_bounds`) are checked first, so none of them is
        journaled, remembered or run: an invalid id is dropped, anything else answered REJECTED.
        """
        if not command_bounds.valid_id(command.command_id):
            self._dropped.drop(command)
            return
        problem = command_bounds.problem(command, self.cfg)
        if problem is not None:
            self._dropped.reject(command, problem)
            self._final(command_bounds.trimmed(command, self.cfg), pb.REJECTED, message=problem, journaled=False)
            return
        if self._journal.seen(command.command_id):
            self._answer_duplicate(command)
            return
        if command.HasField("expires_at") and command.expires_at.ToNanoseconds() / 1e9 < time.time():
            self._final(command, pb.EXPIRED, message="expired before it reached the agent")
            return
        try:
            argv = self._resolve(command)
        except CommandRefused as exc:
            self._dropped.reject(command, str(exc), stored=True)
            self._final(command, pb.REJECTED, message=str(exc))
            return
        self._respond(command, pb.DELIVERED)
        if argv is None:
            self._run_builtin(command)
            return
        task = asyncio.get_running_loop().create_task(self._run(command, argv))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer_duplicate(self, command: pb.CommandMessage) -> None:
        # Redelivered (reconnect, another server, its restart): never run twice. Repeating the
        # latest answer -- the final one, or DELIVERED while it runs -- lets the server stop holding it.
        latest = self._journal.latest(command.command_id)
        log.info(
            "Command %s (%s) already accepted; duplicate delivery not run (%s)",
            shown(command.command_id),
            shown(command.command),
            f"answered {pb.CommandStatus.Name(latest.status)} again" if latest else "its answer is forgotten",
        )
        if latest is not None:
            self._send(latest)

    def finish_interrupted(self) -> None:
        """At start: answer FAILED for each command the journal shows running when the agent stopped."""
        interrupted = self._journal.interrupted()
        if not interrupted:
            return
        for entry in interrupted:
            accepted = datetime.fromtimestamp(entry.accepted_at, UTC).isoformat(timespec="seconds")
            self._final(
                _command_of(entry),
                pb.FAILED,
                exit_code=EXIT_INTERRUPTED,
                message=f"agent restarted while the command was running (accepted at {accepted}); "
                "its outcome is unknown",
                started=entry.accepted_at,
            )
        log.warning(
            "Command journal: %d command%s running when the agent stopped (%s): answered FAILED",
            len(interrupted),
            " was" if len(interrupted) == 1 else "s were",
            "; ".join(f"{shown(e.command_id)}, {shown(e.command)}" for e in interrupted),
        )

    def _resolve(self, command: pb.CommandMessage) -> list[str] | None:
        """argv for a program, None for a built-in; :class:`CommandRefused` if not allowed."""
        name, args = command.command, list(command.args)
        if name in BUILTIN_COMMANDS:
            self._builtins.check(name, args)
            return None
        if name == SHELL_COMMAND and self.cfg.allow_shell:
            return ["/bin/sh", "-c", " ".join(args)]
        spec = self.cfg.definitions.get(name)
        if spec is None:
            raise CommandRefused(f"unknown command {name!r} (not configured on this agent)")
        if self.running >= self.cfg.max_concurrent:
            raise CommandRefused(f"too many commands running (limit {self.cfg.max_concurrent})")
        return bind(spec, args)

    def _run_builtin(self, command: pb.CommandMessage) -> None:
        started = time.time()
        out = self._builtins.run(command.command, list(command.args))
        self._final(command, pb.SUCCEEDED, stdout=out, started=started)

    def _timeout(self, command: pb.CommandMessage) -> float:
        spec = self.cfg.definitions.get(command.command)
        requested = command.timeout_seconds or (spec.timeout_seconds if spec else 0) or self.cfg.default_timeout_seconds
        return min(float(requested), self.cfg.max_timeout_seconds)

    async def _run(self, command: pb.CommandMessage, argv: list[str]) -> None:
        timeout = self._timeout(command)
        log.info(
            "▶ Running command %s (%s) with timeout %gs", shown(command.command_id), shown(command.command), timeout
        )
        started = time.time()
        try:
            outcome = await executor.run(
                argv, timeout=timeout, output_limit=self.cfg.output_limit_bytes, kill_grace=self.cfg.kill_grace_seconds
            )
        except OSError as exc:
            self._final(
                command, pb.FAILED, exit_code=127, message=f"cannot start {argv[0]}: {exc.strerror}", started=started
            )
            return
        self.executed += 1
        if outcome.timed_out:
            status, message = pb.TIMED_OUT, f"killed after {timeout:g}s (process group terminated)"
        elif outcome.exit_code == 0:
            status, message = pb.SUCCEEDED, ""
        else:
            status, message = pb.FAILED, f"exit status {outcome.exit_code}"
        self._final(
            command,
            status,
            exit_code=outcome.exit_code,
            stdout=outcome.stdout.text(),
            stderr=outcome.stderr.text(),
            stdout_truncated=outcome.stdout.truncated,
            stderr_truncated=outcome.stderr.truncated,
            message=message,
            started=outcome.started_at,
            finished=outcome.finished_at,
        )

    def _respond(self, command: pb.CommandMessage, status: pb.CommandStatus.ValueType) -> pb.CommandResponseMessage:
        response = pb.CommandResponseMessage(
            command_id=command.command_id,
            agent_id=self._agent_id,
            command=command.command,
            status=status,
            requested_by=command.requested_by,
            reported_by="agent",
        )
        self._send(response)
        return response

    def _send(self, response: pb.CommandResponseMessage) -> None:
        self._journal.record(response)  # on disk before it can be sent: the promise survives a crash
        self._responses.add_response(response)

    def _final(
        self,
        command: pb.CommandMessage,
        status: pb.CommandStatus.ValueType,
        *,
        exit_code: int = 0,
        stdout: str = "",
        stderr: str = "",
        stdout_truncated: bool = False,
        stderr_truncated: bool = False,
        message: str = "",
        started: float | None = None,
        finished: float | None = None,
        journaled: bool = True,
    ) -> None:
        finished = finished or time.time()
        started = started or finished
        response = pb.CommandResponseMessage(
            command_id=command.command_id,
            agent_id=self._agent_id,
            command=command.command,
            status=status,
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
            message=message,
            requested_by=command.requested_by,
            reported_by="agent",
            duration_seconds=max(0.0, finished - started),
        )
        response.started_at.CopyFrom(_ts(started))
        response.finished_at.CopyFrom(_ts(finished))
        if status != pb.REJECTED:  # a REJECTED one was logged within the budget of refusals
            shown_id, name = shown(command.command_id), shown(command.command)
            log.info("✓ Command %s (%s) → %s", shown_id, name, pb.CommandStatus.Name(status))
        if journaled:
            self._send(response)
        else:  # out of bounds: answered once, never kept (a redelivery is answered the same way)
            self._responses.add_response(response)

    async def close(self) -> None:
        """Cancel running commands (their process groups are killed by the executor)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

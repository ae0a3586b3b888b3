"""What a command from the server may look like before the agent keeps anything of it.

The command stream is input the agent does not control: a producer on the ``commands`` topic
chooses every field. :class:`monitor_agentd.commands.CommandRunner` checks a command here first,
before it is journaled, remembered as seen or run. A command whose id is not a
:data:`config.COMMAND_ID` is dropped -- nothing could correlate an answer to it -- and reported by
:class:`DroppedCommands` in at most one line per interval; a command with a valid id and a name,
``requested_by`` or arguments beyond the bounds of agent.yaml's ``commands`` section
(``max_name_chars``, ``max_requested_by_chars``, ``max_args``, ``max_arg_bytes``; by default
monitord's own, :mod:`monitoring_common.untrusted`) is answered REJECTED, unstored. The bounds are
passed in, so a reload applies them to the next command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from monitor_agentd.config import COMMAND_ID, CommandsSection
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import LogBudget, shown

log = logging.getLogger(__name__)

#: Seconds between two warnings about dropped commands (the drops between are counted).
WARN_EVERY_SECONDS = 60.0
#: Warnings about commands rejected for their bounds: at most this many per REJECT_WINDOW_SECONDS.
REJECT_WARNINGS = 10
REJECT_WINDOW_SECONDS = 10.0


def valid_id(command_id: str) -> bool:
    """True if ``command_id`` is a :data:`config.COMMAND_ID` (so an answer can name it)."""
    return COMMAND_ID.fullmatch(command_id) is not None


def problem(command: pb.CommandMessage, bounds: CommandsSection) -> str | None:
    """Why ``command`` (with a valid id) exceeds ``bounds``, in a few words; None if it does not."""
    if len(command.command) > bounds.max_name_chars:
        return f"command name longer than {bounds.max_name_chars} characters"
    if len(command.requested_by) > bounds.max_requested_by_chars:
        return f"requested_by longer than {bounds.max_requested_by_chars} characters"
    if len(command.args) > bounds.max_args:
        return f"{len(command.args)} arguments (limit {bounds.max_args})"
    if any(len(arg.encode()) > bounds.max_arg_bytes for arg in command.args):
        return f"an argument is longer than {bounds.max_arg_bytes} bytes"
    return None


def trimmed(command: pb.CommandMessage, bounds: CommandsSection) -> pb.CommandMessage:
    """What an answer to an out-of-bounds ``command`` may repeat of it: the id, and the name and
    ``requested_by`` only where they are within ``bounds`` (so monitord can store the answer)."""
    name_ok = len(command.command) <= bounds.max_name_chars
    requested_by_ok = len(command.requested_by) <= bounds.max_requested_by_chars
    return pb.CommandMessage(
        command_id=command.command_id,
        command=command.command if name_ok else "",
        requested_by=command.requested_by if requested_by_ok else "",
    )


def _escaped(problem: str, limit: int = 200) -> str:
    """A refusal's text for a log line: it quotes the name with ``repr`` (control characters already
    escaped, backslashes doubled), so only what repr leaves is escaped here -- non-ASCII -- not twice."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in problem[:limit])
    return text.encode("ascii", "backslashreplace").decode("ascii") + ("…" if len(problem) > limit else "")


class DroppedCommands:
    """The log of refused commands, within a budget (:class:`monitoring_common.untrusted.LogBudget`,
    the throttle of all refused input): a command dropped for an invalid id gets one warning line
    per ``every`` seconds, rejected ones (for their bounds, or unknown, or not allowed) together
    ``REJECT_WARNINGS`` per ``REJECT_WINDOW_SECONDS``; the rest are counted. A flood costs a few
    lines of log, not one each."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, every: float = WARN_EVERY_SECONDS) -> None:
        self._budget = LogBudget(lines=1, seconds=every, clock=clock)
        self._rejected = LogBudget(lines=REJECT_WARNINGS, seconds=REJECT_WINDOW_SECONDS, clock=clock)

    def reject(self, command: pb.CommandMessage, problem: str, *, stored: bool = False) -> None:
        """Log that ``command`` (valid id) was rejected for ``problem`` -- unstored, out of bounds, or
        ``stored`` (journaled: unknown, not allowed, too many running) -- within the budget."""
        if stored:
            self._rejected.log(
                log,
                logging.WARNING,
                "✗ Command %s (%s) rejected: %s",
                shown(command.command_id),
                shown(command.command),
                _escaped(problem),
            )
        else:
            self._rejected.log(
                log, logging.WARNING, "✗ Command %s rejected unstored: %s", shown(command.command_id), problem
            )

    def drop(self, command: pb.CommandMessage) -> None:
        """Count ``command`` as dropped; warn unless a warning was logged less than ``every`` ago."""
        self._budget.log(
            log,
            logging.WARNING,
            "✗ Command with an invalid command_id '%s' dropped unanswered and not stored",
            shown(command.command_id),
        )

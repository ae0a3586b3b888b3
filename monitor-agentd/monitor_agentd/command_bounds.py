"""What a command from the server may look like before the agent keeps anything of it.

The command stream is input the agent does not control: a producer on the ``commands`` topic
chooses every field. :class:`monitor_agentd.commands.CommandRunner` checks a command here first,
before it is journaled, remembered as seen or run. A command whose id is not a
:data:`config.COMMAND_ID` is dropped -- nothing could correlate an answer to it -- and reported by
:class:`DroppedCommands` in at most one line per interval; a command with a valid id and a name,
``requested_by`` or arguments beyond the bounds in :mod:`config` is answered REJECTED, unstored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from monitor_agentd.config import (
    COMMAND_ID,
    MAX_COMMAND_ARG_BYTES,
    MAX_COMMAND_ARGS,
    MAX_COMMAND_NAME_CHARS,
    MAX_REQUESTED_BY_CHARS,
)
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import LogBudget, shown

log = logging.getLogger(__name__)

#: Seconds between two warnings about dropped commands (the drops between are counted).
WARN_EVERY_SECONDS = 60.0


def valid_id(command_id: str) -> bool:
    """True if ``command_id`` is a :data:`config.COMMAND_ID` (so an answer can name it)."""
    return COMMAND_ID.fullmatch(command_id) is not None


def problem(command: pb.CommandMessage) -> str | None:
    """Why ``command`` (with a valid id) exceeds the bounds, in a few words; None if it does not."""
    if len(command.command) > MAX_COMMAND_NAME_CHARS:
        return f"command name longer than {MAX_COMMAND_NAME_CHARS} characters"
    if len(command.requested_by) > MAX_REQUESTED_BY_CHARS:
        return f"requested_by longer than {MAX_REQUESTED_BY_CHARS} characters"
    if len(command.args) > MAX_COMMAND_ARGS:
        return f"{len(command.args)} arguments (limit {MAX_COMMAND_ARGS})"
    if any(len(arg.encode()) > MAX_COMMAND_ARG_BYTES for arg in command.args):
        return f"an argument is longer than {MAX_COMMAND_ARG_BYTES} bytes"
    return None


def trimmed(command: pb.CommandMessage) -> pb.CommandMessage:
    """What an answer to an out-of-bounds ``command`` may repeat of it: the id, and the name and
    ``requested_by`` only where they are within the bounds (so monitord can store the answer)."""
    return pb.CommandMessage(
        command_id=command.command_id,
        command=command.command if len(command.command) <= MAX_COMMAND_NAME_CHARS else "",
        requested_by=command.requested_by if len(command.requested_by) <= MAX_REQUESTED_BY_CHARS else "",
    )


class DroppedCommands:
    """Commands dropped for an invalid id: one warning line per ``every`` seconds, the rest counted
    (:class:`monitoring_common.untrusted.LogBudget`, the throttle of all refused input)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, every: float = WARN_EVERY_SECONDS) -> None:
        self._budget = LogBudget(lines=1, seconds=every, clock=clock)

    def drop(self, command: pb.CommandMessage) -> None:
        """Count ``command`` as dropped; warn unless a warning was logged less than ``every`` ago."""
        self._budget.log(
            log,
            logging.WARNING,
            "✗ Command with an invalid command_id '%s' dropped unanswered and not stored",
            shown(command.command_id),
        )

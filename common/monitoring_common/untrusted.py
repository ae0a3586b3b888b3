"""Text from untrusted sources (Kafka records, peers not yet authenticated) made safe to log.

Anything a sender chose -- an agent id, a command name, a record key -- goes through :func:`shown`
before it reaches a log line: control characters and non-ASCII are escaped (one line per log
record, no terminal escapes) and the result is cut at a bound, so a megabyte field costs a
hundred bytes of log, not a megabyte.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

#: What an agent id and a command id look like, everywhere they enter (gRPC, Kafka records and
#: keys, the agent's journal): host-name-like, at most 128 characters. They become Kafka keys,
#: log fields and file names. Use with ``fullmatch``.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
#: The same, as text for error messages and documentation.
ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ @ : -, starting with a letter or digit"

#: Characters of an untrusted value a log line shows at most (before escaping).
SHOWN_CHARS = 96

#: The default bounds of a command, the one source of both ends' defaults: monitord.yaml
#: ``commands.max_name_chars`` ... (beyond them monitord answers INVALID) and agent.yaml
#: ``commands.max_name_chars`` ... (beyond them the agent answers REJECTED, unstored).
#: Longest command name, in characters.
DEFAULT_MAX_COMMAND_NAME_CHARS = 128
#: Longest ``requested_by``, in characters.
DEFAULT_MAX_REQUESTED_BY_CHARS = 256
#: Most arguments of one command.
DEFAULT_MAX_COMMAND_ARGS = 64
#: Longest argument, in UTF-8 bytes.
DEFAULT_MAX_COMMAND_ARG_BYTES = 4096


def shown(value: str | bytes | None, limit: int = SHOWN_CHARS) -> str:
    """``value`` escaped for a log line and cut after ``limit`` characters (the rest is counted)."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    head = text[:limit].encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        return f"{head}…(+{len(text) - limit} chars)"
    return head


def is_id(value: str) -> bool:
    """Whether ``value`` is a valid agent or command id (:data:`ID`)."""
    return ID.fullmatch(value) is not None


class LogBudget:
    """At most ``lines`` log lines per ``seconds`` for one kind of refused input; the rest are
    counted and reported in the next line allowed ("(N more like it suppressed)")."""

    def __init__(self, lines: int = 10, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lines, self._seconds, self._clock = lines, seconds, clock
        self._window_start = clock()
        self._used = 0
        self.suppressed = 0

    def log(self, logger: logging.Logger, level: int, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._window_start >= self._seconds:
            self._window_start, self._used = now, 0
        if self._used >= self._lines:
            self.suppressed += 1
            return
        self._used += 1
        if self.suppressed:
            message += f" ({self.suppressed} more like it suppressed)"
            self.suppressed = 0
        logger.log(level, message, *args)

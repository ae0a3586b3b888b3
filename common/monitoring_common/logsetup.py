"""Logging for daemons: journald priority prefixes under systemd, a short human format on a terminal.

Under systemd, stderr is connected to journald (``$JOURNAL_STREAM`` names that socket). journald
adds its own timestamps and understands a ``<N>`` syslog-priority prefix per line, so there every
line -- including each line of a traceback -- is written as ``<N>message``. Elsewhere lines read
``13:40:01 INFO  message``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# syslog priorities (sd-daemon.h)
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

LEVELS = ("debug", "info", "warning", "error")


def _priority(levelno: int) -> int:
    for level, prio in sorted(_PRIORITY.items(), reverse=True):
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """Prefix every line of a record (message and traceback) with its ``<N>`` priority."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def stderr_is_journal(stream: TextIO, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True when ``stream`` is the journald stream systemd gave us (``$JOURNAL_STREAM`` = dev:ino)."""
    value = environ.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    dev, _, ino = value.partition(":")
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def configure(level: str = "info", *, stream: TextIO | None = None, journal: bool | None = None) -> None:
    """Install the single stderr handler on the root logger (idempotent; also used on reload)."""
    stream = stream or sys.stderr
    if journal is None:
        journal = stderr_is_journal(stream)
    handler = logging.StreamHandler(stream)
    if journal:
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """Change the log level at run time (SIGHUP reload)."""
    logging.getLogger().setLevel(getattr(logging, level.upper()))
    # Library chatter (grpc, asyncio) only from warning up unless debugging.
    for name in ("asyncio", "grpc"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)

"""CommandResponseMessages for people: which are final, what exit status each means, how they read.

A command gets a DELIVERED response when the agent accepted it, then exactly one final response.
``monitorctl send --wait`` exits with the status the final response maps to:

=========  ====  =============================================================
SUCCEEDED     0  the command ran and exited 0
FAILED        1  the command ran and exited non-zero (its code is printed)
TIMED_OUT   124  the agent killed it at its timeout (as timeout(1))
REJECTED    126  the agent refused it: not allowed, bad arguments, busy
EXPIRED      75  not delivered before its deadline (--ttl); retrying may work
INVALID      65  malformed command (e.g. empty name), refused by monitord
=========  ====  =============================================================

When the agent that took the command (DELIVERED) disconnects before its final response, ``--wait``
stops with 3 (:data:`EXIT_DISCONNECTED`): the outcome is not known yet -- like a monitoring
plugin's UNKNOWN. The agent writes the final status when it reconnects (FAILED if it restarted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitord.command_records import status_name
from monitoring.v1 import monitoring_pb2 as pb

EXIT_FAILED = 1
EXIT_TIMED_OUT = 124
EXIT_REJECTED = 126
EXIT_EXPIRED = 75
EXIT_INVALID = 65
#: ``send --wait``: the agent disconnected after DELIVERED, before a final response.
EXIT_DISCONNECTED = 3

#: Exit status per final status; a status not listed here is not final.
EXIT_BY_STATUS: dict[pb.CommandStatus.ValueType, int] = {
    pb.SUCCEEDED: 0,
    pb.FAILED: EXIT_FAILED,
    pb.TIMED_OUT: EXIT_TIMED_OUT,
    pb.REJECTED: EXIT_REJECTED,
    pb.EXPIRED: EXIT_EXPIRED,
    pb.INVALID: EXIT_INVALID,
}

#: Statuses of a command that ran (exit code, duration and output are meaningful).
_RAN = frozenset({pb.SUCCEEDED, pb.FAILED, pb.TIMED_OUT})


def exit_status(status: pb.CommandStatus.ValueType) -> int:
    """The process exit status for a final ``status`` (KeyError for one that is not final)."""
    return EXIT_BY_STATUS[status]


@dataclass(frozen=True)
class Chunk:
    """A piece of rendered output and the stream it belongs on."""

    stream: Literal["stdout", "stderr"]
    text: str


def summary(response: pb.CommandResponseMessage) -> str:
    """One line: ``DELIVERED to web-1``, ``SUCCEEDED exit 0 in 0.01s``, ``REJECTED: not allowed``."""
    name = status_name(response.status)
    if response.status == pb.DELIVERED:
        return f"DELIVERED to {response.agent_id}"
    if response.status in _RAN:
        line = f"{name} exit {response.exit_code} in {response.duration_seconds:.2f}s"
        return f"{line} ({response.message})" if response.message else line
    line = f"{name}: {response.message or 'no reason given'}"
    return f"{line} (reported by {response.reported_by})" if response.reported_by else line


def render(response: pb.CommandResponseMessage) -> list[Chunk]:
    """The summary line, then the command's stdout (on stdout) and stderr (on stderr), with truncation notes."""
    chunks = [Chunk("stdout", summary(response) + "\n")]
    outputs: tuple[tuple[Literal["stdout", "stderr"], str, bool], ...] = (
        ("stdout", response.stdout, response.stdout_truncated),
        ("stderr", response.stderr, response.stderr_truncated),
    )
    for stream, text, truncated in outputs:
        if text:
            chunks.append(Chunk(stream, text if text.endswith("\n") else text + "\n"))
        if truncated:
            chunks.append(Chunk(stream, f"[{stream} truncated by the agent]\n"))
    return chunks

"""Run one program: no shell, minimal environment, its own process group, a timeout, capped output.

The program runs in a new session (``start_new_session``), so on timeout the whole process group
-- the program and every child it started -- gets SIGTERM and, after a grace period, SIGKILL.
Anything the program leaves behind in its group after it exits is killed too: a command must not
leave orphans on the host. Output beyond the cap keeps its head and tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

#: The whole environment a command gets (it runs as the agent's own user).
MINIMAL_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/"}


class HeadTail:
    """Keeps the first and last ``limit/2`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head_max = limit // 2
        self._tail_max = limit - self._head_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        """Take the next chunk of output."""
        self.total += len(data)
        room = self._head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self._tail_max:
                del self.tail[: len(self.tail) - self._tail_max]

    @property
    def truncated(self) -> bool:
        """True if more than ``limit`` bytes came (the middle is cut)."""
        return self.total > self.limit

    def text(self) -> str:
        """The kept output as text, with a marker where the middle was cut."""
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        cut = self.total - len(self.head) - len(self.tail)
        marker = f"\n[... {cut} bytes truncated ...]\n".encode()
        return (bytes(self.head) + marker + bytes(self.tail)).decode("utf-8", "replace")


@dataclass(frozen=True)
class Outcome:
    """How a run ended."""

    exit_code: int  # negative: killed by that signal
    timed_out: bool
    stdout: HeadTail
    stderr: HeadTail
    started_at: float
    finished_at: float


async def _pump(stream: asyncio.StreamReader | None, sink: HeadTail) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65_536):
        sink.feed(chunk)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def run(argv: Sequence[str], *, timeout: float, output_limit: int, kill_grace: float) -> Outcome:
    """Run ``argv`` (raises OSError if it cannot be started) and return how it ended."""
    started = time.time()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=MINIMAL_ENV,
        cwd="/",
        start_new_session=True,
    )
    out, err = HeadTail(output_limit), HeadTail(output_limit)
    pumps = asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), kill_grace)
    finally:
        # Whatever is left in the group (children, grandchildren) goes now; this also closes
        # the pipes they may hold, so the pumps below finish.
        _kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        try:
            await asyncio.wait_for(pumps, 5)
        except TimeoutError:
            pumps.cancel()
    return Outcome(proc.returncode or 0, timed_out, out, err, started, time.time())

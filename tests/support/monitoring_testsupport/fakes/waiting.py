"""Bounded waits for unit tests: never sleep a fixed time, never wait forever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Upper bound of every wait in these tests.
WAIT = 5.0


async def until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """Wait (bounded) until ``condition()`` holds; fails the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)

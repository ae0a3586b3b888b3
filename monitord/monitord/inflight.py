"""Bounds on records handed to Kafka and not yet acknowledged: per stream, and over all streams.

A stream's budget has the server's total budget as its parent: taking a slot takes one of each
(the stream's first, so one busy stream waits on its own bound before it holds a shared slot).
While a bound is reached the reader waits instead of reading, and gRPC flow control pushes back on
the agent: backpressure, never a drop. Event-loop confined.
"""

from __future__ import annotations

import asyncio


class InflightBudget:
    """``limit`` slots; :meth:`acquire` waits (FIFO) while all are in use."""

    def __init__(self, limit: int, parent: InflightBudget | None = None) -> None:
        self.limit = limit
        self._parent = parent
        self._slots = asyncio.Semaphore(limit)
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Slots taken now (records handed over and not yet acknowledged)."""
        return self._in_use

    def child(self, limit: int) -> InflightBudget:
        """A budget of ``limit`` slots that also takes one of this budget's per slot."""
        return InflightBudget(limit, parent=self)

    async def acquire(self) -> None:
        await self._slots.acquire()
        self._in_use += 1
        if self._parent is not None:
            try:
                await self._parent.acquire()
            except BaseException:  # cancelled while waiting for a shared slot: give ours back
                self._release_own()
                raise

    def release(self) -> None:
        self._release_own()
        if self._parent is not None:
            self._parent.release()

    def _release_own(self) -> None:
        self._in_use -= 1
        self._slots.release()

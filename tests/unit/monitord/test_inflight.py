"""In-flight budgets: a stream's slots also take the server's; a full budget makes acquire wait."""

from __future__ import annotations

import asyncio

import pytest

from monitord.inflight import InflightBudget
from monitoring_testsupport.fakes.monitord import WAIT


def test_a_child_takes_a_slot_of_its_parent_too() -> None:
    async def scenario() -> None:
        total = InflightBudget(3)
        stream = total.child(2)
        await stream.acquire()
        await stream.acquire()
        assert (stream.in_use, total.in_use) == (2, 2)
        blocked = asyncio.create_task(stream.acquire())
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the stream's own bound
        stream.release()
        await asyncio.wait_for(blocked, WAIT)
        other = total.child(5)
        await other.acquire()
        assert total.in_use == 3
        waiting = asyncio.create_task(other.acquire())
        await asyncio.sleep(0.01)
        assert not waiting.done() and other.in_use == 2  # holds its own slot, waits for a shared one
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert other.in_use == 1 and total.in_use == 3  # the cancelled wait gave its own slot back
        for _ in range(2):
            stream.release()
        other.release()
        assert (stream.in_use, other.in_use, total.in_use) == (0, 0, 0)

    asyncio.run(scenario())

"""The collection schedule: fixed slots, set-interval re-plans, records into the outbound queue."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest

from monitor_agentd.collectors.mock import MockCollector
from monitor_agentd.outbound import Outbound
from monitor_agentd.schedule import Schedule
from monitor_agentd.spool import Spool
from monitoring.v1 import monitoring_pb2 as pb

WAIT = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    interval: float = 0.01, sequence: int = 0, clock: Clock | None = None, connected: bool = False
) -> tuple[Schedule, Outbound]:
    outbound = Outbound(Spool(100))
    event = asyncio.Event()
    if connected:
        event.set()
    schedule = Schedule(
        "a1",
        "host-1",
        MockCollector("a1"),
        outbound,
        event,
        interval=interval,
        sequence=sequence,
        labels=MappingProxyType({"rack": "r1"}),
        **({"clock": clock} if clock else {}),
    )
    return schedule, outbound


def records(outbound: Outbound) -> list[pb.MetricsData]:
    out = []
    while (message := outbound.next_message()) is not None:
        out.append(message.metrics_data)
    return out


def test_collect_now_numbers_labels_and_spools(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    schedule, outbound = make(sequence=41)
    assert schedule.collect_now() == 42
    (record,) = records(outbound)
    assert (record.agent_id, record.sequence, record.hostname, record.source) == ("a1", 42, "host-1", "mock")
    assert dict(record.labels) == {"rack": "r1"} and record.collected_at.seconds > 0 and record.cpu.percent > 0
    assert schedule.sequence == 42 and schedule.collected == 1 and len(outbound.spool) == 1
    assert "[42] Spooled (not connected) metrics:\n  CPU: " in caplog.text
    family = schedule.collect_seconds.family("x", "y")
    assert [s.value for s in family.samples if s.name == "x_count"] == [1]


def test_runs_the_given_iterations_then_returns(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        schedule, outbound = make(interval=0.01)
        await asyncio.wait_for(schedule.run(iterations=3), WAIT)
        assert [r.sequence for r in records(outbound)] == [1, 2, 3]

    caplog.set_level("INFO")
    asyncio.run(scenario())
    assert "✓ Completed 3 iterations. Stopping stream." in caplog.text


def test_set_interval_replans_the_sleep(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        schedule, outbound = make(interval=3600, connected=True)
        task = asyncio.create_task(schedule.run(iterations=2))
        await asyncio.wait_for(outbound.wait(), WAIT)  # the first record (after the connect wait)
        assert schedule.set_interval(0.01) == 3600 and schedule.interval == 0.01
        await asyncio.wait_for(task, WAIT)
        assert [r.sequence for r in records(outbound)] == [1, 2]

    caplog.set_level("INFO")
    asyncio.run(scenario())
    assert "Collection interval changed from 3600s to 0.01s" in caplog.text


def test_first_record_waits_at_most_for_the_first_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        connected = asyncio.Event()
        connected.set()
        schedule = Schedule("a1", "h", MockCollector("a1"), outbound, connected, interval=3600)
        await asyncio.wait_for(schedule.run(iterations=1), WAIT)  # no hour-long wait: connected already

    caplog.set_level("INFO")
    asyncio.run(scenario())
    assert "[1] Streamed metrics:" in caplog.text


def test_healthy_while_collections_keep_coming() -> None:
    clock = Clock()
    schedule, _ = make(interval=1, clock=clock)
    assert schedule.healthy()
    clock.now += 29
    assert schedule.healthy()
    clock.now += 2
    assert not schedule.healthy()  # 3 intervals, but at least 30 s
    schedule.collect_now()
    assert schedule.healthy()

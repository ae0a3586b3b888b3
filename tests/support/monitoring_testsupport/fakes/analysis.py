"""Helpers of the analyzer's unit tests: records, rules, a clock and a command sink."""

from __future__ import annotations

import itertools
from typing import Any

from monitord.analysis.evaluator import RuleEvaluator
from monitord.analysis.rule_actions import RuleActions
from monitord.analysis.rules import Rule
from monitord.errors import KafkaUnavailable
from monitoring.v1 import monitoring_pb2 as pb


def record(
    sequence: int = 1, cpu: float = 50.0, *, agent_id: str = "web-1", collected_at: float | None = None
) -> pb.MetricsData:
    m = pb.MetricsData(agent_id=agent_id, sequence=sequence)
    m.cpu.percent = cpu
    m.cpu.load_1m = 1.5
    m.memory.percent = 60.0
    m.memory.swap_percent = 6.25
    m.disks.add(mountpoint="/", percent=40.0)
    m.disks.add(mountpoint="/var", percent=93.5)
    if collected_at is not None:
        m.collected_at.FromNanoseconds(int(collected_at * 1e9))
    return m


def rule(**overrides: Any) -> Rule:
    values: dict[str, Any] = {"name": "hot", "metric": "cpu.percent", "op": ">", "threshold": 90.0, "command": "info"}
    return Rule(**{**values, **overrides})


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSink:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[pb.CommandMessage] = []
        self.fail = fail
        self.polls = 0
        self.flushed: float | None = None

    def send(self, command: pb.CommandMessage) -> None:
        if self.fail:
            raise KafkaUnavailable("queue full")
        self.sent.append(command)

    def poll(self) -> None:
        self.polls += 1

    def flush(self, timeout: float) -> None:
        self.flushed = timeout


def actions(sink: FakeSink, clock: FakeClock, *rules: Rule, max_pending: int = 100) -> RuleActions:
    ids = (f"id{n}" for n in itertools.count(1))
    evaluator = RuleEvaluator(rules or [rule(for_samples=1)], clock=clock)
    return RuleActions(evaluator, sink, clock=clock, new_id=lambda: next(ids), max_pending=max_pending)

"""Rule evaluation, free of Kafka and of the system clock: records in, firings out.

For every (rule, agent) the evaluator keeps the number of consecutive records that matched and
when it last fired. A record that does not match (or lacks the metric) resets the streak; a streak
of ``for_samples`` fires unless the rule fired for that agent less than ``cooldown_seconds`` ago.
The caller has already dropped duplicate records (same agent id and sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitord.analysis.rules import METRICS, Rule
from monitoring.v1 import monitoring_pb2 as pb


def format_number(value: float) -> str:
    """``91.2``, ``90``, ``0.85``: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class Firing:
    """A rule fired for an agent: its metric had ``value``, matching for ``samples`` records in a row."""

    rule: Rule
    agent_id: str
    value: float
    samples: int

    def describe(self) -> str:
        """``cpu.percent 91.2 > 90 for 3 samples``."""
        rule = self.rule
        return (
            f"{rule.metric} {format_number(self.value)} {rule.op} {format_number(rule.threshold)} "
            f"for {self.samples} sample{'s' if self.samples != 1 else ''}"
        )


@dataclass
class _Streak:
    matched: int = 0
    last_fired: float | None = None


class RuleEvaluator:
    """Evaluates ``rules`` on each agent's records; ``clock`` gives epoch seconds (``time.time``)."""

    def __init__(self, rules: Sequence[Rule], *, clock: Callable[[], float], max_sample_age: float = 0.0) -> None:
        self._rules = tuple(rules)
        self._clock = clock
        self._max_age = max_sample_age
        self._streaks: dict[tuple[str, str], _Streak] = {}

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def observe(self, agent_id: str, metrics: pb.MetricsData) -> list[Firing]:
        """Account one new record of ``agent_id``; the rules that fire because of it."""
        now = self._clock()
        if self._max_age > 0 and now - self._collected_at(metrics, now) > self._max_age:
            return []  # old data neither counts nor breaks a streak
        fired: list[Firing] = []
        for rule in self._rules:
            streak = self._streaks.setdefault((rule.name, agent_id), _Streak())
            value = METRICS[rule.metric](metrics)
            if value is None or not rule.matches(value):
                streak.matched = 0
                continue
            streak.matched += 1
            if streak.matched < rule.for_samples:
                continue
            if streak.last_fired is not None and now - streak.last_fired < rule.cooldown_seconds:
                continue
            streak.last_fired = now
            fired.append(Firing(rule, agent_id, value, streak.matched))
        return fired

    @staticmethod
    def _collected_at(metrics: pb.MetricsData, default: float) -> float:
        if not metrics.HasField("collected_at"):
            return default
        return metrics.collected_at.ToNanoseconds() / 1e9

"""Rule evaluation: consecutive samples, cooldown, operators, old records."""

from __future__ import annotations

import pytest

from monitord.analysis.evaluator import Firing, RuleEvaluator, format_number
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.analysis import FakeClock, record, rule


def run(evaluator: RuleEvaluator, clock: FakeClock, cpus: list[float], agent_id: str = "web-1") -> list[int]:
    """Feed one record per cpu value, 1 s apart; the indexes of the records that fired."""
    fired = []
    for i, cpu in enumerate(cpus):
        if evaluator.observe(agent_id, record(i + 1, cpu, agent_id=agent_id)):
            fired.append(i)
        clock.now += 1
    return fired


def test_fires_after_for_samples_consecutive_matches() -> None:
    clock = FakeClock()
    evaluator = RuleEvaluator([rule(for_samples=3, cooldown_seconds=0)], clock=clock)
    # streaks: 1, 2, reset, 1, 2, 3 -> fire, 4 -> fire again (no cooldown)
    assert run(evaluator, clock, [95, 95, 50, 95, 95, 95, 95]) == [5, 6]


def test_cooldown_limits_commands_per_agent_and_rule() -> None:
    clock = FakeClock()
    evaluator = RuleEvaluator([rule(for_samples=2, cooldown_seconds=10)], clock=clock)
    # fires at t=1, then not again until t >= 11 even though every record matches
    assert run(evaluator, clock, [95] * 15) == [1, 11]
    # other agents have their own streak and cooldown
    assert run(evaluator, clock, [95] * 3, agent_id="web-2") == [1]


def test_each_rule_is_independent() -> None:
    clock = FakeClock()
    cpu = rule(name="cpu", for_samples=1)
    disk = rule(name="disk", metric="disk.max_percent", op=">=", threshold=93.5, for_samples=2)
    evaluator = RuleEvaluator([cpu, disk], clock=clock)
    assert [f.rule.name for f in evaluator.observe("web-1", record(1, 95))] == ["cpu"]
    assert [f.rule.name for f in evaluator.observe("web-1", record(2, 50))] == ["disk"]


@pytest.mark.parametrize(
    ("op", "value", "matches"),
    [(">", 90, False), (">", 90.1, True), (">=", 90, True), ("<", 90, False), ("<", 89.9, True), ("<=", 90, True)],
)
def test_operators(op: str, value: float, matches: bool) -> None:
    assert rule(op=op).matches(value) is matches


def test_missing_metric_breaks_the_streak() -> None:
    evaluator = RuleEvaluator([rule(metric="disk.max_percent", for_samples=2, threshold=50)], clock=FakeClock())
    assert evaluator.observe("a", record()) == []
    assert evaluator.observe("a", pb.MetricsData(agent_id="a", sequence=2)) == []  # no disks
    assert evaluator.observe("a", record()) == []
    assert len(evaluator.observe("a", record())) == 1


def test_old_records_are_not_evaluated() -> None:
    clock = FakeClock()
    evaluator = RuleEvaluator([rule(for_samples=2)], clock=clock, max_sample_age=60)
    old = clock.now - 61
    assert evaluator.observe("a", record(1, 95, collected_at=old)) == []
    assert evaluator.observe("a", record(2, 95, collected_at=old)) == []
    assert evaluator.observe("a", record(3, 95, collected_at=clock.now - 5)) == []
    assert len(evaluator.observe("a", record(4, 95, collected_at=clock.now))) == 1
    unlimited = RuleEvaluator([rule()], clock=clock, max_sample_age=0)
    assert len(unlimited.observe("a", record(1, 95, collected_at=0))) == 1


def test_firing_description() -> None:
    firing = Firing(rule(threshold=90), "web-1", 91.2, 3)
    assert firing.describe() == "cpu.percent 91.2 > 90 for 3 samples"
    assert (
        Firing(rule(metric="load.1m", op="<", threshold=0.5), "a", 0.25, 1).describe()
        == "load.1m 0.25 < 0.5 for 1 sample"
    )
    assert [format_number(v) for v in (90.0, 91.234, 0.0, -0.001, 1e6)] == ["90", "91.23", "0", "0", "1000000"]

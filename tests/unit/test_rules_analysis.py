"""Analyzer rules: the --rules file (strict loader), evaluation on a fake clock, commands and reports."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import threading
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from harness import REPO
from monitord import records
from monitord.analysis import cli as analyzer_cli
from monitord.analysis.consumer import Analyzer, AnalyzerOptions
from monitord.analysis.evaluator import Firing, RuleEvaluator, format_number
from monitord.analysis.rule_actions import RuleActions
from monitord.analysis.rules import METRICS, OPERATORS, MetricName, Operator, Rule, RulesConfig, load_rules
from monitord.config import KafkaSection
from monitord.ctl.errors import KafkaUnavailable
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.config_loader import ConfigError, field_docs, load_text

EXAMPLE = REPO / "etc/monitord/analyzer.yaml"

# -- the rules file -------------------------------------------------------------------------------


def test_example_file_loads_and_documents_every_key() -> None:
    cfg = load_rules(EXAMPLE)
    assert [r.name for r in cfg.rules] == ["disk-full", "cpu-hot"]
    data = yaml.safe_load(EXAMPLE.read_text())
    assert set(data) == {f.name for f in dataclasses.fields(RulesConfig)}
    # The first rule spells out every key (the example's comments document each one).
    assert set(data["rules"][0]) == {f.name for f in dataclasses.fields(Rule)}
    lines = EXAMPLE.read_text().splitlines()
    for name in [f.name for f in dataclasses.fields(Rule)] + ["max_sample_age_seconds"]:
        first = next(i for i, line in enumerate(lines) if line.lstrip("- ").startswith(f"{name}:"))
        assert lines[first - 1].lstrip().startswith("#"), f"no comment above {name}"


def test_every_field_is_documented() -> None:
    for schema in (RulesConfig, Rule):
        docs = field_docs(schema)
        assert docs and [key for key, _, _, doc in docs if not doc] == []


def test_metric_and_operator_tables_match_the_schema() -> None:
    assert set(METRICS) == set(get_args(MetricName))
    assert set(OPERATORS) == set(get_args(Operator))


VALID = "rules:\n  - name: hot\n    metric: cpu.percent\n    op: '>'\n    threshold: 90\n    command: info\n"


def test_minimal_rule_gets_defaults() -> None:
    [rule] = load_text(VALID, RulesConfig).rules
    assert rule == Rule(name="hot", metric="cpu.percent", op=">", threshold=90.0, command="info")
    assert (rule.for_samples, rule.args, rule.timeout_seconds, rule.ttl_seconds, rule.cooldown_seconds) == (
        1,
        (),
        30,
        300,
        300.0,
    )
    assert isinstance(rule.threshold, float)
    assert load_text("", RulesConfig) == RulesConfig()


RULE = "rules:\n  - name: hot\n    metric: cpu.percent\n    op: '>'\n    threshold: 90\n    command: info\n"
ERRORS = [
    # (yaml, key, line, fragment of the problem)
    (RULE + "    bogus: 1\n", "rules[0].bogus", 7, "unknown key"),
    (RULE.replace("cpu.percent", "cpu.pct"), "rules[0].metric", 3, "must be one of cpu.percent, memory.percent"),
    (RULE.replace("'>'", "'=='"), "rules[0].op", 4, "must be one of >, >=, <, <="),
    (RULE.replace("threshold: 90", "threshold: high"), "rules[0].threshold", 5, "expected a number"),
    (RULE.replace("    threshold: 90\n", ""), "rules[0].threshold", 2, "required key missing"),
    (RULE.replace("    command: info\n", ""), "rules[0].command", 2, "required key missing"),
    (RULE.replace("name: hot", "name: ''"), "rules[0].name", 2, "required key missing or empty"),
    (RULE + "    for_samples: 0\n", "rules[0].for_samples", 7, "must be >= 1"),
    (RULE + "    for_samples: 2.5\n", "rules[0].for_samples", 7, "expected an integer"),
    (RULE + "    args: x\n", "rules[0].args", 7, "expected a list"),
    (RULE + "    args: [[x]]\n", "rules[0].args[0]", 7, "expected a string"),
    (RULE + "    timeout_seconds: -1\n", "rules[0].timeout_seconds", 7, "must be >= 0"),
    (RULE + "    cooldown_seconds: .nan\n", "rules[0].cooldown_seconds", 7, "finite"),
    (RULE + RULE.removeprefix("rules:\n"), "rules", 2, "duplicate rule name 'hot' (rules[1])"),
    ("rules: {hot: 1}\n", "rules", 1, "expected a list"),
    ("rules:\n  - 7\n", "rules[0]", 2, "expected a mapping"),
    ("max_sample_age_seconds: -1\n", "max_sample_age_seconds", 1, "must be >= 0"),
]


@pytest.mark.parametrize(("text", "key", "line", "problem"), ERRORS)
def test_errors_name_key_and_line(text: str, key: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, RulesConfig, "rules.yaml")
    err = info.value
    assert (err.key, err.line) == (key, line), str(err)
    assert problem in err.problem
    assert str(err).startswith(f"rules.yaml:{line}: {key}: ")


def test_empty_rule_item_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  -\n")
    with pytest.raises(ConfigError, match=r"rules: every rule must be a mapping"):
        load_rules(path)


def test_analyzer_rules_errors_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitord.yaml"
    config.write_text("")
    bad = tmp_path / "rules.yaml"
    bad.write_text(RULE.replace("'>'", "'!'"))
    for path, where in [(bad, f"{bad}:4: rules[0].op: must be one of"), (tmp_path / "nope.yaml", "file not found")]:
        with pytest.raises(SystemExit) as info:
            analyzer_cli.main(["--config", str(config), "--rules", str(path), "--check-config"])
        assert info.value.code == 78
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("monitor-analyzer: configuration error: ") and where in lines[0]
    assert analyzer_cli.main(["--config", str(config), "--rules", str(EXAMPLE), "--check-config"]) == 0
    assert "2 rules" in capsys.readouterr().out


# -- metrics and evaluation -----------------------------------------------------------------------


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


def test_metric_extraction() -> None:
    m = record(cpu=91.25)
    assert {name: read(m) for name, read in METRICS.items()} == {
        "cpu.percent": 91.25,
        "memory.percent": 60.0,
        "swap.percent": 6.25,
        "load.1m": 1.5,
        "disk.max_percent": 93.5,
    }
    assert {name: read(pb.MetricsData()) for name, read in METRICS.items()} == dict.fromkeys(METRICS)


def rule(**overrides: Any) -> Rule:
    values: dict[str, Any] = {"name": "hot", "metric": "cpu.percent", "op": ">", "threshold": 90.0, "command": "info"}
    return Rule(**{**values, **overrides})


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


# -- actions: commands out, reports in ------------------------------------------------------------


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


def test_a_firing_sends_the_command() -> None:
    sink, clock = FakeSink(), FakeClock()
    hot = rule(name="disk-full", args=("{agent_id}", "/var", "x{agent_id}y"), timeout_seconds=5, ttl_seconds=60)
    acts = actions(sink, clock, hot)
    [event] = acts.on_metrics("web-1", record(cpu=91.2))
    assert event.kind == "rule_fired"
    assert event.text == "RULE disk-full fired for web-1: cpu.percent 91.2 > 90 for 1 sample → command info id1"
    [command] = sink.sent
    assert (command.command_id, command.agent_id, command.command) == ("id1", "web-1", "info")
    assert list(command.args) == ["web-1", "/var", "xweb-1y"]
    assert (command.timeout_seconds, command.ttl_seconds, command.requested_by) == (5, 60, "analyzer:disk-full")
    assert command.created_at.ToNanoseconds() == int(clock.now * 1e9)
    assert event.fields["command"]["commandId"] == "id1" and event.fields["value"] == 91.2


def test_final_response_is_correlated_with_the_rule() -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock)
    acts.on_metrics("web-1", record(cpu=95))
    assert acts.pending == 1
    delivered = pb.CommandResponseMessage(command_id="id1", status=pb.DELIVERED)
    assert acts.on_response(delivered) is None and acts.pending == 1
    assert acts.on_response(pb.CommandResponseMessage(command_id="other", status=pb.SUCCEEDED)) is None
    done = pb.CommandResponseMessage(command_id="id1", status=pb.SUCCEEDED, exit_code=0, stdout="pong\nmore\n")
    event = acts.on_response(done)
    assert event is not None and event.kind == "rule_result"
    assert event.text == "RULE hot on web-1: command id1 → SUCCEEDED exit 0: pong"
    assert event.fields["response"]["status"] == "SUCCEEDED"
    assert acts.on_response(done) is None and acts.pending == 0  # reported once


def test_refusals_and_failures_are_reported() -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock, rule(for_samples=1, cooldown_seconds=0))
    acts.on_metrics("web-1", record(1, 95))
    acts.on_metrics("web-1", record(2, 95))
    rejected = pb.CommandResponseMessage(command_id="id1", status=pb.REJECTED, message="unknown command 'info'")
    failed = pb.CommandResponseMessage(command_id="id2", status=pb.FAILED, exit_code=2)
    assert [e.text for e in (acts.on_response(rejected), acts.on_response(failed)) if e is not None] == [
        "RULE hot on web-1: command id1 → REJECTED: unknown command 'info'",
        "RULE hot on web-1: command id2 → FAILED exit 2",
    ]


def test_a_command_kafka_refused_is_reported_and_not_awaited() -> None:
    sink, clock = FakeSink(fail=True), FakeClock()
    acts = actions(sink, clock)
    [event] = acts.on_metrics("web-1", record(cpu=95))
    assert "→ command info NOT SENT: queue full" in event.text and event.fields["error"] == "queue full"
    assert acts.pending == 0


def test_pending_commands_are_bounded() -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock, rule(for_samples=1, cooldown_seconds=0), max_pending=2)
    for seq in range(1, 4):
        acts.on_metrics("web-1", record(seq, 95))
    assert acts.pending == 2
    assert acts.on_response(pb.CommandResponseMessage(command_id="id1", status=pb.SUCCEEDED)) is None
    assert acts.on_response(pb.CommandResponseMessage(command_id="id3", status=pb.SUCCEEDED)) is not None


# -- the analyzer loop with rules (fake consumer) --------------------------------------------------


class FakeMsg:
    def __init__(self, topic: str, message: Any, agent_id: str) -> None:
        self._topic = topic
        self._key, self._value, self._headers = records.encode(message, agent_id=agent_id, server_id="t")

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def topic(self) -> str:
        return self._topic


class FakeConsumer:
    """Hands out the queued messages, then stops the analyzer."""

    def __init__(self, messages: list[FakeMsg], stop: threading.Event) -> None:
        self.messages = messages
        self.stop = stop

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        pass

    def poll(self, timeout: float) -> FakeMsg | None:
        if self.messages:
            return self.messages.pop(0)
        self.stop.set()
        return None

    def close(self) -> None:
        pass


@pytest.mark.parametrize("json_output", [False, True])
def test_analyzer_runs_rules_on_new_records_only(json_output: bool) -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock, rule(for_samples=2, cooldown_seconds=3600))
    messages = [
        FakeMsg("monitoring-data", record(1, 95), "web-1"),
        FakeMsg("monitoring-data", record(1, 95), "web-1"),  # duplicate: dropped before the rules
        FakeMsg("monitoring-data", record(2, 95), "web-1"),
        FakeMsg("monitoring-data", record(3, 95), "web-1"),
        FakeMsg(
            "command-responses",
            pb.CommandResponseMessage(command_id="id1", command="info", status=pb.DELIVERED),
            "web-1",
        ),
        FakeMsg(
            "command-responses",
            pb.CommandResponseMessage(command_id="id1", command="info", status=pb.SUCCEEDED, stdout="ok"),
            "web-1",
        ),
    ]
    stop = threading.Event()
    out = io.StringIO()
    opts = AnalyzerOptions(summary_interval=3600, json_output=json_output)
    Analyzer(KafkaSection(), opts, out, consumer_factory=lambda _conf: FakeConsumer(messages, stop), rules=acts).run(
        stop
    )
    assert len(sink.sent) == 1 and sink.polls >= 6 and sink.flushed is not None
    if json_output:
        types = [json.loads(line)["type"] for line in out.getvalue().splitlines()]
        assert types == [
            "metrics",
            "metrics",
            "rule_fired",
            "metrics",
            "command_response",
            "command_response",
            "rule_result",
            "summary",
        ]
        return
    lines = out.getvalue().splitlines()
    assert lines[2] == "RULE hot fired for web-1: cpu.percent 95 > 90 for 2 samples → command info id1"
    assert "[web-1] command id1 (info) → DELIVERED" in lines
    assert "[web-1] command id1 (info) → SUCCEEDED exit 0 (0.00s)" in lines
    assert "RULE hot on web-1: command id1 → SUCCEEDED exit 0: ok" in lines

"""The rules file: schema, defaults, errors naming key and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args

import pytest
import yaml

from monitord.analysis.rules import METRICS, OPERATORS, MetricName, Operator, Rule, RulesConfig, load_rules
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.config_loader import ConfigError, field_docs, load_text
from monitoring_testsupport import REPO
from monitoring_testsupport.fakes.analysis import record

EXAMPLE = REPO / "etc/monitord/analyzer.yaml"


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

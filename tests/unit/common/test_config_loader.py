"""The strict loader: every error names file, key and line; valid files give frozen dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from monitor_agentd.config import AgentConfig
from monitord.config import MonitordConfig
from monitoring_common.config_loader import ConfigError, field_docs, load_file, load_text

CASES = [
    # (yaml, key, line, fragment of the problem)
    ("server:\n  bogus: 1\n", "server.bogus", 2, "unknown key"),
    ("nonsense: 1\n", "nonsense", 1, "unknown key"),
    ("server:\n  max_inflight_total: many\n", "server.max_inflight_total", 2, "expected an integer"),
    ("server:\n  log_each_record: 3\n", "server.log_each_record", 2, "expected a boolean"),
    ("kafka:\n  linger_ms: -1\n", "kafka.linger_ms", 2, "must be >= 0"),
    ("kafka:\n  queue_max_messages: 10\n", "kafka.queue_max_messages", 2, "must be >= 1000"),
    ("kafka:\n  compression: brotli\n", "kafka.compression", 2, "must be one of"),
    ("kafka:\n  topics: [a, b]\n", "kafka.topics", 2, "expected a mapping"),
    ("kafka:\n  topics:\n    metrics: ''\n", "kafka.topics.metrics", 3, "must not be empty"),
    ("server:\n  listen: nope\n", "server.listen", 2, "expected HOST:PORT"),
    ("server:\n  listen: a:1\n  listen: b:2\n", "server.listen", 3, "duplicate key"),
    ("kafka:\n  producer:\n    acks: [1]\n", "kafka.producer.acks", 3, "expected a scalar"),
    ("- a\n- b\n", "(top level)", 1, "expected a mapping"),
]


@pytest.mark.parametrize(("text", "key", "line", "problem"), CASES)
def test_errors_name_key_and_line(text: str, key: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, MonitordConfig, "monitord.yaml")
    err = info.value
    assert (err.key, err.line) == (key, line)
    assert problem in err.problem
    assert str(err).startswith(f"monitord.yaml:{line}: {key}: ")


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("server:\n  listen: [\n", MonitordConfig, "x.yaml")
    assert info.value.line is not None and "invalid YAML" in str(info.value)


def test_agent_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match=r"connection.backoff_max_seconds: must be >= backoff_initial"):
        load_text("connection:\n  backoff_initial_seconds: 5\n  backoff_max_seconds: 1\n", AgentConfig)
    with pytest.raises(ConfigError, match=r"agent.servers: at least one"):
        load_text("agent:\n  servers: []\n", AgentConfig)
    with pytest.raises(ConfigError, match=r":4: agent.servers\[1\]: expected a string"):
        load_text("agent:\n  servers:\n  - a:1\n  - 7\n", AgentConfig)


def test_empty_file_and_missing_default_give_defaults(tmp_path: Path) -> None:
    assert load_text("", AgentConfig) == AgentConfig()
    assert load_file(tmp_path / "absent.yaml", AgentConfig, missing_ok=True) == AgentConfig()
    with pytest.raises(ConfigError, match="file not found"):
        load_file(tmp_path / "absent.yaml", AgentConfig)


def test_values_are_frozen_and_typed() -> None:
    cfg = load_text(
        "agent:\n  servers: [a:1, b:2]\n  labels: {rack: r1}\ncollection:\n  interval_seconds: 2\n", AgentConfig
    )
    assert cfg.agent.servers == ("a:1", "b:2")
    assert cfg.agent.labels["rack"] == "r1"
    assert cfg.collection.interval_seconds == 2.0 and isinstance(cfg.collection.interval_seconds, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.agent.id = "x"  # type: ignore[misc]


@pytest.mark.parametrize("schema", [MonitordConfig, AgentConfig])
def test_every_field_is_documented(schema: type) -> None:
    docs = field_docs(schema)
    assert docs
    assert [key for key, _, _, doc in docs if not doc] == []

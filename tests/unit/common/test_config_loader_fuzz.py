"""Hostile input, part 1: any YAML either loads or fails with a one-line ConfigError (exit 78) --
never a traceback. Property-based (hypothesis); each test prints how many cases it tried."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor_agentd.config import AgentConfig
from monitord.analysis.rules import RulesConfig
from monitord.config import MonitordConfig
from monitoring_common.config_loader import ConfigError, field_docs, load_text
from monitoring_testsupport import BIN

SCHEMAS: list[type[Any]] = [MonitordConfig, AgentConfig, RulesConfig]
# Real key names (every level) make the generator reach deep into the schema, not only the top.
KEYS = sorted({part for schema in SCHEMAS for key, *_ in field_docs(schema) for part in key.split(".")})
CASES = 400

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=30,
)
counted: dict[str, int] = {}


def _check(text: str, schema: type[Any], label: str) -> None:
    counted[label] = counted.get(label, 0) + 1
    try:
        load_text(text, schema, "fuzz.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml") and "\n" not in message.strip(), message


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_structured_yaml_loads_or_fails_cleanly(schema: type[Any]) -> None:
    @settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(documents)
    def run(doc: Any) -> None:
        _check(yaml.safe_dump(doc, allow_unicode=True), schema, f"structured {schema.__name__}")

    run()
    print(f"config fuzz, structured {schema.__name__}: {counted[f'structured {schema.__name__}']} cases")


def test_arbitrary_text_loads_or_fails_cleanly() -> None:
    @settings(max_examples=CASES, deadline=None)
    @given(st.text(max_size=200))
    def run(text: str) -> None:
        _check(text, AgentConfig, "text")

    run()
    print(f"config fuzz, arbitrary text: {counted['text']} cases")


def test_cli_exit_status_is_0_or_78_never_a_traceback(tmp_path: Path) -> None:
    """A sample through the real entry points: exit 0 or 78, one line, no traceback."""
    tried = 0

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(documents)
    def run(doc: Any) -> None:
        nonlocal tried
        path = tmp_path / "fuzz.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        for daemon in ("monitord", "monitor-agentd"):
            tried += 1
            result = subprocess.run(
                [str(BIN / daemon), "--config", str(path), "--check-config"], capture_output=True, text=True, timeout=30
            )
            assert result.returncode in (0, 78), result.stderr
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 1, result.stderr

    run()
    print(f"config fuzz through the CLIs: {tried} cases")

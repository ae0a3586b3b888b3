"""The commented example files in etc/ document exactly the keys the schema has, with its defaults."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from monitor_agentd.config import AgentConfig
from monitord.config import MonitordConfig
from monitoring_common.config_loader import field_docs, load_file
from monitoring_testsupport import REPO

FILES = [(REPO / "etc/monitord/monitord.yaml", MonitordConfig), (REPO / "etc/monitor-agentd/agent.yaml", AgentConfig)]


def _leaves(data: dict, prefix: str = "") -> set[str]:  # type: ignore[type-arg]
    keys: set[str] = set()
    for k, v in data.items():
        if isinstance(v, dict) and v and k not in ("labels", "producer", "definitions"):
            keys |= _leaves(v, f"{prefix}{k}.")
        else:
            keys.add(prefix + k)
    return keys


@pytest.mark.parametrize(("path", "schema"), FILES)
def test_example_lists_every_key_with_default(path, schema) -> None:  # type: ignore[no-untyped-def]
    loaded = load_file(path, schema)
    if schema is AgentConfig:  # ships example command definitions; everything else is the default
        assert loaded.commands.definitions and all(
            s.argv[0].startswith("/") for s in loaded.commands.definitions.values()
        )
        loaded = dataclasses.replace(loaded, commands=dataclasses.replace(loaded.commands, definitions={}))
    assert loaded == schema()
    documented = {key for key, *_ in field_docs(schema)}
    assert _leaves(yaml.safe_load(path.read_text())) == documented

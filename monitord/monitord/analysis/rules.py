"""The analyzer's threshold rules: the ``--rules`` file, validated by the strict config loader.

A rule watches one figure of every agent's metrics (``metric``), compares it with a threshold
(``op``, ``threshold``) and, once that holds for ``for_samples`` consecutive records of an agent,
sends ``command`` to that agent -- at most once per ``cooldown_seconds`` per agent and rule.
etc/monitord/analyzer.yaml documents every key; errors name file, key and line (exit 78).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.config_loader import ConfigError, InvalidField, load_file, setting

MetricName = Literal["cpu.percent", "memory.percent", "swap.percent", "load.1m", "disk.max_percent"]
Operator = Literal[">", ">=", "<", "<="]

#: Placeholder in a rule's ``args`` replaced by the id of the agent the command goes to.
AGENT_ID_PLACEHOLDER = "{agent_id}"


def _fullest_disk(m: pb.MetricsData) -> float | None:
    return max((d.percent for d in m.disks), default=None)


#: How each metric name is read from a record; None when the record does not carry it.
METRICS: Mapping[str, Callable[[pb.MetricsData], float | None]] = MappingProxyType(
    {
        "cpu.percent": lambda m: m.cpu.percent if m.HasField("cpu") else None,
        "memory.percent": lambda m: m.memory.percent if m.HasField("memory") else None,
        "swap.percent": lambda m: m.memory.swap_percent if m.HasField("memory") else None,
        "load.1m": lambda m: m.cpu.load_1m if m.HasField("cpu") else None,
        "disk.max_percent": _fullest_disk,
    }
)

OPERATORS: Mapping[str, Callable[[float, float], bool]] = MappingProxyType(
    {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
)


@dataclass(frozen=True)
class Rule:
    """One threshold rule. ``name``, ``metric``, ``op``, ``threshold`` and ``command`` are required."""

    name: str = setting("", "Unique name; shown in the analyzer's output and sent as requested_by 'analyzer:NAME'.")
    metric: MetricName = setting(
        "",
        "Figure compared: cpu.percent, memory.percent, swap.percent, load.1m, or disk.max_percent "
        "(the fullest filesystem).",
    )
    op: Operator = setting("", "Comparison of the metric with the threshold: >, >=, < or <=.")
    threshold: float = setting(math.nan, "The value compared with.")
    for_samples: int = setting(
        1, "Consecutive records of an agent that must match before the rule fires.", min=1, max=100_000
    )
    command: str = setting("", "Command sent to the agent (a built-in such as info, or one defined in agent.yaml).")
    args: tuple[str, ...] = setting(
        factory=tuple, doc="Command arguments; '{agent_id}' in an argument is replaced by the agent's id."
    )
    timeout_seconds: int = setting(30, "Execution timeout on the agent (0 = the agent's default).", min=0, max=86_400)
    ttl_seconds: int = setting(
        300,
        "Seconds the command may wait for delivery before it is EXPIRED (0 = monitord's default).",
        min=0,
        max=7 * 86_400,
    )
    cooldown_seconds: float = setting(
        300.0, "At most one command per agent and rule within this many seconds.", min=0, max=365 * 86_400
    )

    def __post_init__(self) -> None:
        # The loader only checks keys that are present; required ones are checked here.
        for key in ("name", "metric", "op", "command"):
            if not getattr(self, key):
                raise InvalidField(key, "required key missing or empty")
        if math.isnan(self.threshold):
            raise InvalidField("threshold", "required key missing")

    def matches(self, value: float) -> bool:
        """Whether ``value`` of the metric is on the firing side of the threshold."""
        return OPERATORS[self.op](value, self.threshold)

    def command_args(self, agent_id: str) -> tuple[str, ...]:
        """``args`` with ``{agent_id}`` replaced (literally; other braces are left alone)."""
        return tuple(arg.replace(AGENT_ID_PLACEHOLDER, agent_id) for arg in self.args)


@dataclass(frozen=True)
class RulesConfig:
    """The whole ``--rules`` file."""

    rules: tuple[Rule, ...] = setting(factory=tuple, doc="The rules; each is evaluated for every agent.")
    max_sample_age_seconds: float = setting(
        300.0,
        "Records collected longer ago than this are not evaluated, so reading old data (e.g. with "
        "--from-beginning, or an agent replaying its spool) sends no commands. 0 = no limit.",
        min=0,
    )

    def __post_init__(self) -> None:
        names: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in names:
                raise InvalidField("rules", f"duplicate rule name {rule.name!r} (rules[{index}])")
            names.add(rule.name)


def load_rules(path: str | Path) -> RulesConfig:
    """Load and validate a rules file; raises :class:`ConfigError` naming file, key and line."""
    try:
        return load_file(path, RulesConfig)
    except InvalidField as exc:
        # An empty list item (``- ``) makes the loader build Rule() without values, outside the
        # place where it turns InvalidField into a located ConfigError.
        raise ConfigError(
            str(path), None, "rules", f"every rule must be a mapping with its keys ({exc.problem})"
        ) from None

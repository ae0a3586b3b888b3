"""make_collector picks the collector collection.mode names."""

from __future__ import annotations

from monitor_agentd.collectors import make_collector
from monitor_agentd.collectors.mock import MockCollector
from monitor_agentd.collectors.system import SystemCollector
from monitor_agentd.config import CollectionSection


def test_mode_selects_the_collector() -> None:
    assert isinstance(make_collector(CollectionSection(mode="mock"), "a1"), MockCollector)
    real = make_collector(CollectionSection(mode="real"), "a1")
    assert isinstance(real, SystemCollector) and real.name == "real"

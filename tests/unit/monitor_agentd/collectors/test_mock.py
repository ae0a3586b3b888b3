"""The deterministic mock collector."""

from __future__ import annotations

from monitor_agentd.collectors.mock import MockCollector
from monitoring.v1 import monitoring_pb2 as pb


def test_mock_collector_is_deterministic() -> None:
    a, b = pb.MetricsData(), pb.MetricsData()
    MockCollector("agent-1").collect(a, 7)
    MockCollector("agent-1").collect(b, 7)
    assert a == b and 0 <= a.cpu.percent <= 100 and a.disks and a.network.interfaces
    c = pb.MetricsData()
    MockCollector("agent-2").collect(c, 7)
    assert c.cpu.percent != a.cpu.percent

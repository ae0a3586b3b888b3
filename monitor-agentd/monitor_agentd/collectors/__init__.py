"""Metric collectors: ``real`` (psutil) and ``mock`` (deterministic), behind one small protocol."""

from __future__ import annotations

from typing import Protocol

from monitor_agentd.config import CollectionSection
from monitoring.v1 import monitoring_pb2 as pb


class Collector(Protocol):
    """Fills the measurement fields of a MetricsData (identity fields are set by the caller)."""

    name: str

    def collect(self, record: pb.MetricsData, sequence: int) -> None:
        """Fill ``record``'s measurements (``sequence`` lets a synthetic source be deterministic)."""
        ...


def make_collector(cfg: CollectionSection, agent_id: str) -> Collector:
    """The collector ``cfg.mode`` names."""
    if cfg.mode == "mock":
        from monitor_agentd.collectors.mock import MockCollector

        return MockCollector(agent_id)
    import psutil

    from monitor_agentd.collectors.system import SystemCollector

    return SystemCollector(cfg, psutil)

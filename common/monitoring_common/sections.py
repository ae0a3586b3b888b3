"""Config sections both daemons share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitoring_common.config_loader import setting, split_hostport


@dataclass(frozen=True)
class LoggingSection:
    """Log output (stderr; journald under systemd, with a priority per line)."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "Minimum level logged.")


@dataclass(frozen=True)
class MetricsSection:
    """Prometheus metrics endpoint (text format at http://LISTEN/metrics)."""

    listen: str = setting(
        "", "HOST:PORT to serve /metrics on; empty: off. Keep it on localhost or a management network."
    )

    def __post_init__(self) -> None:
        if self.listen:
            split_hostport("listen", self.listen)

"""Config sections both daemons share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitoring_common.config_loader import setting


@dataclass(frozen=True)
class LoggingSection:
    """Log output (stderr; journald under systemd, with a priority per line)."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "Minimum level logged.")

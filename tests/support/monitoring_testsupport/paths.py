"""Where things are, fresh names and ports, small file helpers."""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

#: The repository root (this package is installed editable from tests/support).
REPO = Path(__file__).resolve().parents[3]
#: The venv's bin directory: the same entry points an operator runs.
BIN = Path(sys.executable).parent
KAFKA_SH = REPO / "scripts" / "kafka.sh"
# The package versions the system tests build: the one installed first, and the upgrade.
OLD_VERSION, NEW_VERSION = "0.1.0", "0.1.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """A fresh agent id, so tests sharing one broker never see each other's records."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path

"""The committed generated code matches monitoring.proto (regenerate with scripts/gen-proto.sh)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitoring_testsupport import REPO


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [str(REPO / "scripts/gen-proto.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    committed = REPO / "proto/monitoring/v1"
    names = ["monitoring_pb2.py", "monitoring_pb2.pyi", "monitoring_pb2_grpc.py", "monitoring_pb2_grpc.pyi"]
    stale = [n for n in names if (tmp_path / "monitoring/v1" / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"stale generated files {stale}: run scripts/gen-proto.sh"

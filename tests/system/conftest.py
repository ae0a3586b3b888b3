"""What the system tests share: the packages, built once per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from monitoring_testsupport import NEW_VERSION, OLD_VERSION, REPO


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both packages built twice: the installed version and the upgrade."""
    out = tmp_path_factory.mktemp("packages")
    for version in (OLD_VERSION, NEW_VERSION):
        result = subprocess.run(
            [str(REPO / "scripts/build-packages")],
            env={**os.environ, "VERSION": version, "DIST_DIR": str(out)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return out

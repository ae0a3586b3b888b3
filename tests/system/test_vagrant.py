"""The Vagrantfile is valid for every provider (its VMs boot in tests/system/test_vms.py)."""

from __future__ import annotations

import subprocess

from monitoring_testsupport import REPO


def test_vagrantfile_validates() -> None:
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "validated successfully" in result.stdout, result.stdout + result.stderr


def test_scenario_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(REPO / "tests/system/scenario.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""Both daemons: each class of config error -> exit 78 and one line naming file, key and line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from monitoring_testsupport import BIN, REPO

ERRORS = {
    "unknown key": ("logging:\n  levle: info\n", "logging.levle", 2),
    "wrong type": ("logging:\n  level: [info]\n", "logging.level", 2),
    "out of range": ("{section}:\n  {int_key}: -5\n", "{section}.{int_key}", 2),
    "bad yaml": ("logging: [\n", "", 2),
}
DAEMONS = {
    "monitord": {"section": "server", "int_key": "max_inflight_total"},
    "monitor-agentd": {"section": "spool", "int_key": "max_records"},
}


@pytest.mark.parametrize("daemon", DAEMONS)
@pytest.mark.parametrize("case", ERRORS)
def test_config_error_exits_78(daemon: str, case: str, tmp_path: Path) -> None:
    raw_text, raw_key, line = ERRORS[case]
    text, key = str(raw_text).format(**DAEMONS[daemon]), str(raw_key).format(**DAEMONS[daemon])
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for extra in ([], ["--check-config"]):
        result = subprocess.run(
            [str(BIN / daemon), "--config", str(path), *extra], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 78, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"{path}:{line}: {key}" in lines[0]


@pytest.mark.parametrize("daemon", DAEMONS)
def test_missing_explicit_config_exits_78(daemon: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / daemon), "--config", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78 and "file not found" in result.stderr


@pytest.mark.parametrize(
    ("daemon", "path"),
    [("monitord", "etc/monitord/monitord.yaml"), ("monitor-agentd", "etc/monitor-agentd/agent.yaml")],
)
def test_shipped_config_checks_ok(daemon: str, path: str) -> None:
    result = subprocess.run(
        [str(BIN / daemon), "--check-config", "--config", str(REPO / path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_bad_flag_values_exit_78() -> None:
    cases = [
        (["monitord", "--listen", "nowhere"], "--listen"),
        (["monitor-agentd", "--interval", "0"], "--interval"),
        (["monitor-agentd", "--server", "x"], "--server"),
    ]
    for argv, flag in cases:
        result = subprocess.run(
            [str(BIN / argv[0]), *argv[1:], "--check-config"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 78 and flag in result.stderr, result.stderr


@pytest.mark.parametrize("prog", ["monitord", "monitor-agentd", "monitor-analyzer"])
def test_version(prog: str) -> None:
    result = subprocess.run([str(BIN / prog), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "0.1.0" in result.stdout

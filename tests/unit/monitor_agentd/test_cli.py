"""The command line: overrides on top of the file, and the exit statuses of a failed start."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from monitor_agentd import cli
from monitor_agentd.state import StateDir
from monitoring_common.config_loader import ConfigError
from monitoring_common.exits import EX_CANTCREAT, EX_CONFIG, EX_OK, EX_UNAVAILABLE


def args(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(argv))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "agent:\n  id: from-file\n  servers: ['f:1']\ncollection:\n  interval_seconds: 3\n")
    cfg = cli.load_config(
        args(
            "--config", path, "--server", "a:1", "--server", "b:2", "--agent-id", "x", "--state-dir", "/s",
            "--interval", "0.5", "--iterations", "4", "--mode", "mock", "--log-level", "debug", "--insecure",
        )
    )  # fmt: skip
    assert cfg.agent.servers == ("a:1", "b:2") and cfg.agent.id == "x" and cfg.agent.state_dir == "/s"
    assert (cfg.collection.interval_seconds, cfg.collection.iterations, cfg.collection.mode) == (0.5, 4, "mock")
    assert cfg.logging.level == "debug" and cfg.connection.tls.mode == "plaintext"
    plain = cli.load_config(args("--config", path))
    assert plain.agent.id == "from-file" and plain.collection.interval_seconds == 3
    assert plain.connection.tls.mode == "mtls"


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--server", "nohost"], "--server"),
        (["--interval", "0.01"], "--interval: must be >= 0.05"),
        (["--iterations", "-1"], "--iterations: must be >= 0"),
    ],
)
def test_bad_overrides_name_the_flag(tmp_path: Path, flags: list[str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        cli.load_config(args("--config", write(tmp_path, ""), *flags))


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "")
    assert cli.main(["--config", path, "--check-config"]) == EX_OK
    assert f"configuration OK ({path})" in capsys.readouterr().out
    bad = write(tmp_path, "bogus: 1\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", bad, "--check-config"])
    assert info.value.code == EX_CONFIG


def base(tmp_path: Path, extra: str = "") -> list[str]:
    return ["--config", write(tmp_path, extra), "--state-dir", str(tmp_path / "state"), "--insecure", "--mode", "mock"]


def test_state_dir_in_use_exits_73(tmp_path: Path) -> None:
    holder = StateDir(str(tmp_path / "state"))
    holder.acquire()
    try:
        assert cli.main(base(tmp_path)) == EX_CANTCREAT
    finally:
        holder.release()


def test_unreadable_credentials_exit_78(tmp_path: Path) -> None:
    argv = ["--config", write(tmp_path, "connection:\n  tls:\n    mode: tls\n    ca_file: /nonexistent\n")]
    assert cli.main([*argv, "--state-dir", str(tmp_path / "state"), "--mode", "mock"]) == EX_CONFIG


def test_metrics_listen_failure_exits_69_and_releases_the_state_dir(tmp_path: Path) -> None:
    extra = "metrics:\n  listen: '256.0.0.1:9'\n"
    assert cli.main(base(tmp_path, extra)) == EX_UNAVAILABLE
    again = StateDir(str(tmp_path / "state"))
    again.acquire()  # not left locked
    again.release()
    assert (tmp_path / "state" / "lock").read_text() == f"{os.getpid()}\n"

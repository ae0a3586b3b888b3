"""monitord's command line: overrides applied over the file, --check-config, exit statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord import cli
from monitoring_common.config_loader import ConfigError


def test_overrides_apply_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "monitord.yaml"
    path.write_text("server:\n  listen: 0.0.0.0:6000\n  server_id: from-file\n")
    overrides = ["--listen", "127.0.0.1:7000", "--server-id", "s9", "--kafka-bootstrap", "k:1", "--log-level", "debug"]
    args = cli.parser().parse_args(["--config", str(path), *overrides, "--insecure"])
    cfg = cli.load_config(args)
    assert (cfg.server.listen, cfg.server.server_id, cfg.kafka.bootstrap_servers) == ("127.0.0.1:7000", "s9", "k:1")
    assert cfg.logging.level == "debug"
    assert cfg.server.tls.mode == "plaintext" and not cfg.server.auth.require_identity
    plain = cli.load_config(cli.parser().parse_args(["--config", str(path)]))
    assert (plain.server.listen, plain.server.server_id) == ("0.0.0.0:6000", "from-file")


def test_a_bad_override_names_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "monitord.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="--listen"):
        cli.load_config(cli.parser().parse_args(["--config", str(path), "--listen", "nowhere"]))


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitord.yaml"
    path.write_text("server:\n  tls:\n    mode: plaintext\n")
    assert cli.main(["--config", str(path), "--check-config"]) == 0
    assert "monitord: configuration OK" in capsys.readouterr().out
    path.write_text("server:\n  listen: 1\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", str(path), "--check-config"])
    assert info.value.code == 78
    missing_secrets = tmp_path / "secrets.yaml"
    path.write_text(f"kafka:\n  secrets_file: {missing_secrets}\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", str(path), "--check-config"])
    assert info.value.code == 78

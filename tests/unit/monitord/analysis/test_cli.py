"""monitor-analyzer's command line: a bad rules file exits 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.analysis import cli as analyzer_cli
from monitoring_testsupport import REPO

EXAMPLE = REPO / "etc/monitord/analyzer.yaml"
RULE = "rules:\n  - name: hot\n    metric: cpu.percent\n    op: '>'\n    threshold: 90\n    command: info\n"


def test_analyzer_rules_errors_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitord.yaml"
    config.write_text("")
    bad = tmp_path / "rules.yaml"
    bad.write_text(RULE.replace("'>'", "'!'"))
    for path, where in [(bad, f"{bad}:4: rules[0].op: must be one of"), (tmp_path / "nope.yaml", "file not found")]:
        with pytest.raises(SystemExit) as info:
            analyzer_cli.main(["--config", str(config), "--rules", str(path), "--check-config"])
        assert info.value.code == 78
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("monitor-analyzer: configuration error: ") and where in lines[0]
    assert analyzer_cli.main(["--config", str(config), "--rules", str(EXAMPLE), "--check-config"]) == 0
    assert "2 rules" in capsys.readouterr().out

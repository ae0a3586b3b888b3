"""Command ids already accepted: bounded, and persisted across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor_agentd.dedup import SeenCommands


def test_ids_survive_a_restart_and_the_file_is_compacted(tmp_path: Path) -> None:
    path = tmp_path / "commands-seen"
    seen = SeenCommands(path, remember=3)
    for command_id in ("a", "b", "c", "d"):
        seen.add(command_id)
    assert "a" not in seen and "d" in seen  # bounded in memory
    again = SeenCommands(path, remember=3)
    assert all(i in again for i in ("b", "c", "d")) and "a" not in again
    assert path.read_text() == "b\nc\nd\n"


def test_memory_only_without_a_path() -> None:
    seen = SeenCommands(None)
    seen.add("x")
    assert "x" in seen and "y" not in seen


def test_unwritable_file_is_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen = SeenCommands(tmp_path / "missing-dir" / "commands-seen")
    seen.add("x")
    assert "x" in seen and "Cannot record command id" in caplog.text

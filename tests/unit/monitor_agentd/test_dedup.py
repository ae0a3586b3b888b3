"""Command ids already accepted: a bounded set; the commands-seen file of older agents is readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor_agentd.dedup import LEGACY_MAX_BYTES, SeenCommands, read_seen_file


def test_bounded_oldest_forgotten_first() -> None:
    seen = SeenCommands(remember=3)
    for command_id in ("a", "b", "c", "d", "b"):
        seen.add(command_id)
    assert "a" not in seen and all(i in seen for i in "bcd") and len(seen) == 3
    assert list(seen) == ["b", "c", "d"]


def test_legacy_file_is_read_once_missing_or_unreadable_is_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "commands-seen"
    path.write_text("x\n\ny\n")
    assert read_seen_file(path) == ["x", "y"]
    assert read_seen_file(tmp_path / "none") == []
    assert read_seen_file(tmp_path) == [] and "Cannot read" in caplog.text  # a directory


def test_legacy_file_is_never_followed_read_bounded_and_only_valid_ids_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret-id\n")
    link = tmp_path / "commands-seen"
    link.symlink_to(victim)
    assert read_seen_file(link) == [] and "is a symbolic link: refusing to follow it" in caplog.text
    link.unlink()
    link.write_bytes(b"old-1\n" + b"x" * (LEGACY_MAX_BYTES * 2) + b"\nbad\x1b]id\nnew-1\n")
    assert read_seen_file(link) == ["new-1"]  # the tail only; the escape sequence is not an id
    assert "Ignoring 1 invalid command ids" in caplog.text and "\x1b" not in caplog.text

"""The state directory lock: one agent per directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor_agentd.errors import StateDirError
from monitor_agentd.state import StateDir


def test_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    first = StateDir(str(tmp_path / "state"))
    first.acquire()
    assert (tmp_path / "state" / "lock").read_text() == f"{os.getpid()}\n"
    assert first.spool_dir == tmp_path / "state" / "spool"
    assert first.seen_commands == tmp_path / "state" / "commands-seen"
    second = StateDir(str(tmp_path / "state"))
    with pytest.raises(StateDirError, match=rf"in use by another monitor-agentd \(pid {os.getpid()}\)"):
        second.acquire()
    first.release()
    first.release()  # idempotent
    second.acquire()
    second.release()


def test_unusable_directory_is_a_state_dir_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateDirError, match="cannot use state directory"):
        StateDir(str(blocker / "state")).acquire()

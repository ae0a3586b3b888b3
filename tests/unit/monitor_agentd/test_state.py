"""The state directory lock: one agent per directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor_agentd.errors import StateDirError, UnsafeStateDir
from monitor_agentd.state import ConnectionNumbers, StateDir


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


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_connection_numbers_increase_and_continue_after_a_restart(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "state"))
    state.acquire()
    clock = Clock(1000.0)  # wall clock 1,000,000 ms
    numbers = ConnectionNumbers(state.connection_file, clock=clock)
    assert numbers.last == 0
    assert [numbers.next(), numbers.next(), numbers.next()] == [1_000_000, 1_000_001, 1_000_002]
    assert state.connection_file.read_text() == "1000002\n"
    clock.now = 10.0  # the clock jumped back: the kept number still wins
    again = ConnectionNumbers(state.connection_file, clock=clock)
    assert again.last == 1_000_002 and again.next() == 1_000_003
    state.release()
    assert StateDir(str(tmp_path / "state")).connections().last == 1_000_003


def test_connection_numbers_without_a_file_follow_the_clock(tmp_path: Path) -> None:
    clock = Clock(2000.0)
    numbers = ConnectionNumbers(None, clock=clock)
    assert numbers.next() == 2_000_000
    clock.now = 2000.0005  # same millisecond
    assert numbers.next() == 2_000_001
    clock.now = 3000.0
    assert numbers.next() == 3_000_000


def test_an_unreadable_or_unwritable_number_file_is_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "connection"
    path.write_text("garbage")
    numbers = ConnectionNumbers(path, clock=Clock(5.0))
    assert numbers.last == 0 and "Ignoring the unreadable last connection number" in caplog.text
    missing = ConnectionNumbers(tmp_path / "gone" / "connection", clock=Clock(5.0))
    assert missing.next() == 5000 and "Cannot keep connection number 5000" in caplog.text


def test_a_new_state_directory_is_private(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "state"))
    state.acquire()
    state.release()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def test_a_world_writable_state_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state").chmod(0o777)
    with pytest.raises(UnsafeStateDir, match=r"writable by group and others \(mode 0777\)"):
        StateDir(str(tmp_path / "state")).acquire()
    assert not (tmp_path / "state" / "lock").exists()


def test_a_link_at_the_lock_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "lock").symlink_to(victim)
    with pytest.raises(UnsafeStateDir, match=r"state/lock is a symbolic link: refusing to follow it"):
        StateDir(str(tmp_path / "state")).acquire()
    assert victim.read_text() == "precious\n"


def test_a_link_at_the_connection_file_is_replaced_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("12345\n")
    state = StateDir(str(tmp_path / "state"))
    state.acquire()
    state.connection_file.symlink_to(victim)
    (tmp_path / "state" / "connection.tmp").symlink_to(victim)
    numbers = state.connections()
    assert numbers.last == 0 and "is a symbolic link: refusing to follow it" in caplog.text
    assert ConnectionNumbers(state.connection_file, clock=Clock(5.0), directory=state.dir).next() == 5000
    state.release()
    assert victim.read_text() == "12345\n"
    assert not state.connection_file.is_symlink() and state.connection_file.read_text() == "5000\n"


def test_a_huge_or_garbled_connection_file_is_read_only_so_far_and_shown_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "connection"
    path.write_bytes(b"1" * 10_000_000)
    assert ConnectionNumbers(path, clock=Clock(5.0)).last == 0
    path.write_bytes(b"12\x1b[31m")
    assert ConnectionNumbers(path, clock=Clock(5.0)).last == 0
    assert "1" * 100 not in caplog.text and "\\x1b[31m" in caplog.text and "\x1b" not in caplog.text


def test_release_closes_every_descriptor(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    state = StateDir(str(tmp_path / "state"))
    state.acquire()
    assert state.spool() is state.spool()
    state.release()
    assert len(os.listdir("/proc/self/fd")) == before

"""The state directory's files: a directory others could write to is refused, a planted link is
never followed, reads are bounded."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from monitor_agentd.errors import StateDirError, UnsafeStateDir
from monitor_agentd.statefiles import SafeDir

NOBODY = 65534


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_a_new_directory_is_created_private_and_files_0600(tmp_path: Path) -> None:
    directory = SafeDir.open(tmp_path / "a" / "state")
    os.close(directory.open_file("f", os.O_WRONLY | os.O_CREAT))
    directory.close()
    assert (tmp_path / "a" / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a" / "state" / "f").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("mode", "who"), [(0o777, "group and others"), (0o770, "its group"), (0o1757, "others")])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(UnsafeStateDir, match=rf"state directory {state} is writable by {who} \(mode {mode:04o}\)"):
        SafeDir.open(state)


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(UnsafeStateDir, match=rf"{state} is owned by uid {NOBODY} \(nobody\), not by the agent's user"):
        SafeDir.open(state)


def test_the_configured_path_may_be_a_link_of_root_not_of_another_user(tmp_path: Path) -> None:
    real = tmp_path / "private" / "state"
    real.mkdir(parents=True, mode=0o700)
    link = tmp_path / "state"
    link.symlink_to(real)  # as systemd's DynamicUser= does: owned by root
    SafeDir.open(link).close()
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafeStateDir, match=rf"{link} is a symbolic link owned by uid {NOBODY}"):
        SafeDir.open(link)


def test_an_unusable_path_is_a_state_dir_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError, match="cannot use state directory"):
        SafeDir.open(tmp_path / "file" / "state")


def test_a_planted_link_is_refused_and_a_fresh_temp_file_replaces_it(tmp_path: Path) -> None:
    target = victim(tmp_path)
    directory = SafeDir.open(tmp_path / "state")
    (tmp_path / "state" / "data").symlink_to(target)
    (tmp_path / "state" / "data.tmp").symlink_to(target)
    with pytest.raises(UnsafeStateDir, match=r"state/data is a symbolic link: refusing to follow it"):
        directory.open_file("data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    directory.replace("data", b"new\n", fsync=True)  # through data.tmp, a link: removed, not followed
    assert target.read_text() == "precious\n"
    assert (tmp_path / "state" / "data").read_text() == "new\n" and not (tmp_path / "state" / "data").is_symlink()
    assert not (tmp_path / "state" / "data.tmp").exists()


def test_a_fifo_or_a_hard_link_is_refused_without_hanging(tmp_path: Path) -> None:
    directory = SafeDir.open(tmp_path / "state")
    os.mkfifo(tmp_path / "state" / "fifo")
    os.link(victim(tmp_path), tmp_path / "state" / "hard")
    done = threading.Event()

    def attempt() -> None:
        with pytest.raises(UnsafeStateDir, match="is not a regular file"):
            directory.read_small("fifo", 10)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    assert done.is_set()
    with pytest.raises(UnsafeStateDir, match="has other hard links"):
        directory.open_file("hard", os.O_WRONLY)


def test_reads_are_bounded(tmp_path: Path) -> None:
    directory = SafeDir.open(tmp_path / "state")
    (tmp_path / "state" / "big").write_bytes(b"9" * 1_000_000)
    assert directory.read_small("big", 32) == b"9" * 33  # one more than the limit: too large
    assert directory.read_small("absent", 32) is None


def test_a_subdirectory_is_never_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    directory = SafeDir.open(tmp_path / "state")
    assert directory.subdir("spool").path == tmp_path / "state" / "spool"
    assert (tmp_path / "state" / "spool").stat().st_mode & 0o777 == 0o700
    (tmp_path / "state" / "other").symlink_to(elsewhere)
    with pytest.raises(UnsafeStateDir, match="state/other is a symbolic link or not a directory"):
        directory.subdir("other")

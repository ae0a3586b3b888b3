"""The agent's state directory: one agent per directory (a lock), the spool and command ids."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from monitor_agentd.errors import StateDirError


class StateDir:
    """``<state_dir>``: ``lock``, ``spool/``, ``commands-seen``. Holding it excludes other agents."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Create the directory and take its lock, or raise :class:`StateDirError`."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(f"cannot use state directory {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirError(
                f"state directory {self.path} is in use by another monitor-agentd (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    @property
    def spool_dir(self) -> Path:
        """Where the on-disk spool lives."""
        return self.path / "spool"

    @property
    def seen_commands(self) -> Path:
        """The file of command ids already accepted."""
        return self.path / "commands-seen"

    def release(self) -> None:
        """Give the lock up (idempotent); another agent may use the directory then."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

"""The agent's state directory: one agent per directory (a lock), the spool, command ids and the
number of its last connection."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from monitor_agentd.errors import StateDirError

log = logging.getLogger(__name__)


class StateDir:
    """``<state_dir>``: ``lock``, ``spool/``, ``commands-seen``, ``connection``. Holding it excludes other agents."""

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

    @property
    def connection_file(self) -> Path:
        """The file holding the number of the agent's last connection."""
        return self.path / "connection"

    def connections(self) -> ConnectionNumbers:
        """The agent's connection numbers, continued from the ones used before this process."""
        return ConnectionNumbers(self.connection_file)

    def release(self) -> None:
        """Give the lock up (idempotent); another agent may use the directory then."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class ConnectionNumbers:
    """Numbers for the agent's connections: strictly increasing for every stream it opens.

    Presence records on ``agent-status`` are ordered by them (the server's view of which stream is
    newer). The last number is kept in ``path`` and continued after a restart; each number is also
    at least the wall clock in milliseconds, so an agent whose state directory was lost (or that
    runs without one, ``path=None``) still numbers above everything it used before, as long as
    its clock did not jump back. A file that cannot be read or written is logged, never fatal.
    """

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._last = self._load()

    @property
    def last(self) -> int:
        """The number handed out last (0 before the first connection ever)."""
        return self._last

    def next(self) -> int:
        """The number of a new connection (kept on disk before it is used)."""
        number = max(self._last + 1, int(self._clock() * 1000))
        self._last = number
        self._store(number)
        return number

    def _load(self) -> int:
        if self._path is None:
            return 0
        try:
            text = self._path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("Cannot read the last connection number from %s: %s", self._path, exc)
            return 0
        if not text.isdigit():
            log.warning("Ignoring the unreadable last connection number in %s: %r", self._path, text[:40])
            return 0
        return int(text)

    def _store(self, number: int) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, f"{number}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("Cannot keep connection number %d in %s: %s", number, self._path, exc.strerror or exc)

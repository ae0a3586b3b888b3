"""The agent's state directory: one agent per directory (a lock), the spool, command ids and the
number of its last connection.

The directory is opened and checked once (:class:`statefiles.SafeDir`: owned by the agent's user
or root, not writable by group or others) and every file in it is opened through that descriptor
without following links. A link or non-file at ``lock`` is refused (:class:`UnsafeStateDir`,
exit 78); the ``connection`` file is never fatal: a link there is logged and replaced, never
followed, and only a number of at most 20 digits is taken from it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from monitor_agentd.errors import StateDirError
from monitor_agentd.statefiles import SafeDir, parent_of
from monitoring_common.untrusted import shown

log = logging.getLogger(__name__)


class StateDir:
    """``<state_dir>``: ``lock``, ``spool/``, ``commands-seen``, ``connection``. Holding it excludes other agents."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._dir: SafeDir | None = None
        self._spool: SafeDir | None = None

    def acquire(self) -> None:
        """Create (0700) and check the directory and take its lock, or raise :class:`StateDirError`
        (:class:`UnsafeStateDir` if it is not private to the agent or ``lock`` is not a plain file)."""
        directory = SafeDir.open(self.path)
        try:
            fd = directory.open_file("lock", os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            directory.close()
            raise StateDirError(f"cannot use state directory {self.path}: {exc.strerror}") from None
        except BaseException:
            directory.close()
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = shown(os.pread(fd, 32, 0).strip()) or "?"
            os.close(fd)
            directory.close()
            raise StateDirError(
                f"state directory {self.path} is in use by another monitor-agentd (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._dir = directory

    @property
    def dir(self) -> SafeDir:
        """The open, checked directory (after :meth:`acquire`)."""
        assert self._dir is not None, "acquire() first"
        return self._dir

    def spool(self) -> SafeDir:
        """The spool directory, opened (created 0700) under this one without following a link;
        closed by :meth:`release`."""
        if self._spool is None:
            self._spool = self.dir.subdir("spool")
        return self._spool

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
        return ConnectionNumbers(self.connection_file, directory=self._dir)

    def release(self) -> None:
        """Give the lock up (idempotent); another agent may use the directory then."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for directory in (self._spool, self._dir):
            if directory is not None:
                directory.close()
        self._dir = self._spool = None


class ConnectionNumbers:
    """Numbers for the agent's connections: strictly increasing for every stream it opens.

    Presence records on ``agent-status`` are ordered by them (the server's view of which stream is
    newer). The last number is kept in ``path`` and continued after a restart; each number is also
    at least the wall clock in milliseconds, so an agent whose state directory was lost (or that
    runs without one, ``path=None``) still numbers above everything it used before, as long as
    its clock did not jump back. A file that cannot be read or written is logged, never fatal.
    """

    def __init__(
        self, path: Path | None, *, clock: Callable[[], float] = time.time, directory: SafeDir | None = None
    ) -> None:
        self._path = path
        self._dir = directory
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
            with parent_of(self._path, self._dir) as directory:
                data = directory.read_small(self._path.name, _NUMBER_BYTES)
        except (OSError, StateDirError) as exc:  # a link too: not followed, replaced at the next store
            log.warning("Cannot read the last connection number from %s: %s", self._path, exc)
            return 0
        text = (data or b"").strip()
        if data is None:
            return 0
        if len(data) > _NUMBER_BYTES or not text.isdigit() or len(text) > 20:
            log.warning("Ignoring the unreadable last connection number in %s: %s", self._path, shown(text, 40))
            return 0
        return int(text)

    def _store(self, number: int) -> None:
        if self._path is None:
            return
        try:
            with parent_of(self._path, self._dir) as directory:
                directory.replace(self._path.name, f"{number}\n".encode(), fsync=True)
        except (OSError, StateDirError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            log.warning("Cannot keep connection number %d in %s: %s", number, self._path, reason)


#: ``connection`` holds one number: more than this is not one.
_NUMBER_BYTES = 32

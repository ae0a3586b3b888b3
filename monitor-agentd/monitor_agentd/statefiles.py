"""The state directory's files, opened so that nobody else can redirect them.

The directory is opened once (:meth:`SafeDir.open`) and checked: it must belong to the agent's
user or to root, and neither its group nor others may write to it (sticky bit or not: keep state
in a private directory). Otherwise someone else could plant a link there, and the agent would
write its lock, spool or journal through it. The configured path itself may be a symbolic link
(systemd's ``DynamicUser=`` makes ``/var/lib/<name>`` one, to ``/var/lib/private/<name>``) if
the link belongs to root or the agent's user. Everything inside is opened relative to the
directory's descriptor with ``O_NOFOLLOW``: a planted link is never followed, and anything but a
regular file with a single link is refused (:class:`UnsafeStateDir`, exit 78). A temporary file
is never opened as found: whatever has its name is removed (a link itself, not its target) and
the file created afresh. Reads of the small files are bounded (:meth:`SafeDir.read_small`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

from monitor_agentd.errors import StateDirError, UnsafeStateDir

#: Mode of the directories the agent creates, and of its files.
DIR_MODE = 0o700
FILE_MODE = 0o600
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a file should be must not hang the agent in open(2).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def check_dir(st: os.stat_result, path: Path) -> None:
    """Raise :class:`UnsafeStateDir` unless ``st`` (of directory ``path``) is ours and private enough."""
    if not _trusted(st.st_uid):
        raise UnsafeStateDir(
            f"state directory {path} is owned by {_user(st.st_uid)}, not by the agent's user "
            f"({_user(os.geteuid())}){' or root' if os.geteuid() else ''}: refusing to use it"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH else None
        who = who or ("its group" if st.st_mode & stat.S_IWGRP else "others")
        raise UnsafeStateDir(
            f"state directory {path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"refusing to use it (chmod go-w {path}, or use a private directory)"
        )


class SafeDir:
    """An open, checked directory; every file in it is opened through its descriptor."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        #: For messages only: the name is never resolved again.
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> SafeDir:
        """Open (creating it 0700 if ``create``) and check the directory at ``path``.

        Raises :class:`UnsafeStateDir` if it is not private to the agent, :class:`StateDirError`
        if it cannot be created or opened.
        """
        path = Path(path)
        try:
            if create:
                path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            link = os.lstat(path)
            if stat.S_ISLNK(link.st_mode) and not _trusted(link.st_uid):
                raise UnsafeStateDir(
                    f"state directory {path} is a symbolic link owned by {_user(link.st_uid)}, not by "
                    "the agent's user or root: refusing to follow it"
                )
            fd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            raise StateDirError(f"cannot use state directory {path}: {exc.strerror or exc}") from None
        try:
            check_dir(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def subdir(self, name: str) -> SafeDir:
        """The directory ``name`` in this one (created 0700), never through a link."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, DIR_MODE, dir_fd=self.fd)
        try:
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeStateDir(
                    f"{self.path / name} is a symbolic link or not a directory: refusing to follow it"
                ) from None
            raise StateDirError(f"cannot use {self.path / name}: {exc.strerror or exc}") from None
        try:
            check_dir(os.fstat(fd), self.path / name)
        except BaseException:
            os.close(fd)
            raise
        return SafeDir(fd, self.path / name)

    def open_file(self, name: str, flags: int, *, fresh: bool = False) -> int:
        """A descriptor for the regular file ``name`` (``flags`` plus no-follow, 0600 if created).

        With ``fresh`` (temporary files), whatever has the name is removed first and the file is
        created exclusively. Raises :class:`UnsafeStateDir` for a symbolic link or anything but a
        regular file with one link, OSError for the rest (FileNotFoundError without O_CREAT).
        """
        if fresh:
            self.unlink(name)
            flags |= os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(name, flags | _FILE_FLAGS, FILE_MODE, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeStateDir(f"{self.path / name} is a symbolic link: refusing to follow it") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "has other hard links" if stat.S_ISREG(st.st_mode) else "is not a regular file"
            raise UnsafeStateDir(f"{self.path / name} {what}: refusing to use it")
        return fd

    def read_small(self, name: str, limit: int) -> bytes | None:
        """Up to ``limit`` + 1 bytes of ``name`` (more than ``limit`` means too large); None if absent."""
        try:
            fd = self.open_file(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, limit + 1)
        finally:
            os.close(fd)

    def replace(self, name: str, data: bytes, *, fsync: bool) -> None:
        """Atomically give ``name`` the content ``data`` (through a fresh ``name.tmp``)."""
        tmp = name + ".tmp"
        fd = self.open_file(tmp, os.O_WRONLY, fresh=True)
        try:
            os.write(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.rename(tmp, name)
        if fsync:
            self.fsync()

    def rename(self, src: str, dst: str) -> None:
        """Rename within the directory (a link at ``dst`` is replaced, never followed)."""
        os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        """Remove ``name`` (a link itself, not what it points to); absent is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def names(self) -> list[str]:
        """The names in the directory."""
        return os.listdir(self.fd)

    def fsync(self) -> None:
        """Make files created or renamed in the directory durable."""
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def parent_of(path: Path, directory: SafeDir | None) -> Iterator[SafeDir]:
    """``directory`` if given, else ``path``'s parent opened (not created) for the block."""
    if directory is not None:
        yield directory
        return
    opened = SafeDir.open(path.parent, create=False)
    try:
        yield opened
    finally:
        opened.close()

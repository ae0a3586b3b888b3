"""The command journal's file: opened once without following links, read back one frame at a time
within a bound, appended to, and rewritten atomically by compaction.

The file is opened (created 0600) under the state directory's descriptor with ``O_NOFOLLOW``
(:mod:`statefiles`): a symbolic link or anything but a plain file at its name is refused
(:class:`UnsafeStateDir`, exit 78). The descriptor is kept for every later append, and a
compaction writes a fresh ``<name>.tmp`` (whatever had that name is removed first, never written
through), renames it over the journal and keeps appending to it: the name is never resolved
again while the agent runs. A file larger than ``max_file_bytes`` -- more than a journal grows to
-- is not read at all (OSError ``EFBIG``; the journal then keeps this run in memory only).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from monitor_agentd.framing import FRAME_HEADER_BYTES, cut_tail, read_frames, write_frame
from monitor_agentd.statefiles import SafeDir


class JournalFile:
    """One journal file in ``directory`` (or, without one, in ``path``'s parent, opened here)."""

    def __init__(self, path: Path, directory: SafeDir | None, *, fsync: bool, max_file_bytes: int) -> None:
        self.path = path
        self.fsync = fsync
        self.max_file_bytes = max_file_bytes
        self._dir = directory
        self._owns_dir = directory is None
        self._fd: int | None = None
        #: Bytes of intact frames in the file; bytes of torn tail cut at :meth:`read`.
        self.size = 0
        self.repaired_bytes = 0

    @property
    def directory(self) -> SafeDir:
        """The directory the file is in (opened by :meth:`read` or the first append)."""
        assert self._dir is not None
        return self._dir

    def read(self) -> Iterator[tuple[int, bytes]]:
        """Open the file (creating it) and yield (offset, payload) of each intact frame; the torn
        tail is cut afterwards. OSError if it cannot be opened or is too large (nothing yielded)."""
        fd = self._open()
        size = os.fstat(fd).st_size
        if size > self.max_file_bytes:
            self.close()
            raise OSError(errno.EFBIG, f"{size} bytes, more than the {self.max_file_bytes} a journal grows to")
        end = 0
        for start, payload in read_frames(fd, size):
            end = start + len(payload)
            yield start, payload
        self.size = end
        self.repaired_bytes = cut_tail(fd, end, size, f"Command journal {self.path}")

    def _open(self) -> int:
        if self._dir is None:
            self._dir = SafeDir.open(self.path.parent, create=False)
        if self._fd is None:
            self._fd = self._dir.open_file(self.path.name, os.O_RDWR | os.O_CREAT | os.O_APPEND)
            if self.fsync:
                self._dir.fsync()
        return self._fd

    def append(self, payload: bytes, *, fsync: bool) -> None:
        """Append one frame (opening the file if :meth:`read` did not)."""
        write_frame(self._open(), payload, fsync=fsync)
        self.size += FRAME_HEADER_BYTES + len(payload)

    def rewrite(self, data: bytes) -> None:
        """Replace the file's content by ``data`` (already framed) atomically; appends continue there."""
        assert self._dir is not None
        tmp = self.path.name + ".tmp"
        fd = self._dir.open_file(tmp, os.O_WRONLY | os.O_APPEND, fresh=True)
        try:
            os.write(fd, data)
            if self.fsync:
                os.fsync(fd)
            self._dir.rename(tmp, self.path.name)
        except BaseException:
            os.close(fd)
            raise
        if self.fsync:
            self._dir.fsync()
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self.size = len(data)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._owns_dir and self._dir is not None:
            self._dir.close()
            self._dir = None

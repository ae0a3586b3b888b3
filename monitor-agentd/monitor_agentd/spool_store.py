"""The on-disk part of the spool: append-only segment files of length+CRC framed records.

Layout under ``<state_dir>/spool/``::

    acked                          highest sequence known durable upstream (atomic replace)
    seg-00000000000000000001.log   records, the file named after its first sequence number

Each record is a frame (:mod:`framing`) holding the serialized MetricsData, written with a single
``write(2)`` on an ``O_APPEND`` descriptor *before* the record is sent. A ``kill -9`` at any moment
therefore leaves every completed write intact; a torn or corrupt tail (only possible on power loss)
is detected by length/CRC at the next start and cut off. With ``fsync`` on, each append is also
flushed to stable storage. A segment is deleted once every record in it is acknowledged (or
dropped by the bound).

Every file is opened under the directory's descriptor without following links
(:mod:`statefiles`): a symbolic link (or anything but a plain file) named like a segment is
removed, never read or truncated; one at ``acked`` is refused (:class:`UnsafeStateDir`); an
``acked`` that is not a number of at most 20 digits counts as nothing acknowledged.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor_agentd.errors import UnsafeStateDir
from monitor_agentd.framing import FRAME_HEADER_BYTES, cut_tail, read_frames, write_frame
from monitor_agentd.statefiles import SafeDir
from monitoring_common.untrusted import shown

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"seg-[0-9]{20}\.log")
#: ``acked`` holds one sequence number: more than this is not one.
_ACKED_BYTES = 32


@dataclass
class Segment:
    """One segment file and the sequence range it holds."""

    path: Path
    first: int
    last: int
    size: int


@dataclass(frozen=True)
class Location:
    """Where a record lives on disk."""

    segment: Path
    offset: int
    length: int


class SpoolStore:
    """Segments of one agent's state directory (a single writer: the agent holds a lock).

    ``directory`` is the spool directory, already opened (:meth:`StateDir.spool`) or a path to
    open (and create) at :meth:`open`.
    """

    def __init__(self, directory: Path | SafeDir, *, segment_records: int = 1000, fsync: bool = True) -> None:
        self._dir = directory if isinstance(directory, SafeDir) else None
        self._owns_dir = self._dir is None
        self.path = directory.path if isinstance(directory, SafeDir) else directory
        self.segment_records = segment_records
        self.fsync = fsync
        self.acked = 0
        self.segments: list[Segment] = []
        self._fd: int | None = None
        self._current_count = 0
        self.repaired_bytes = 0

    @property
    def dir(self) -> SafeDir:
        """The open spool directory."""
        if self._dir is None:
            self._dir = SafeDir.open(self.path)
        return self._dir

    # -- start-up --------------------------------------------------------------------------------

    def open(self) -> Iterator[tuple[int, bytes, Location]]:
        """Scan and repair the segments; yields (sequence, payload, location) of unacked records."""
        self.acked = self._read_acked()
        for name in sorted(n for n in self.dir.names() if _SEGMENT.fullmatch(n)):
            path = self.path / name
            segment = Segment(path, first=0, last=0, size=0)
            try:
                fd = self.dir.open_file(name, os.O_RDWR)
            except (UnsafeStateDir, OSError) as exc:
                log.warning("Spool: removing %s without reading it: %s", path, exc)
                self._remove(name)
                continue
            try:
                for seq, payload, location in self._scan(fd, path):
                    segment.first = segment.first or seq
                    segment.last = seq
                    segment.size = location.offset + location.length
                    if seq > self.acked:
                        yield seq, payload, location
            finally:
                os.close(fd)
            if segment.last == 0 or segment.last <= self.acked:
                self._remove(name)  # empty, or everything in it is acknowledged
                continue
            self.segments.append(segment)

    def _read_acked(self) -> int:
        data = self.dir.read_small("acked", _ACKED_BYTES)  # a link there is refused: UnsafeStateDir
        text = (data or b"").strip()
        if data is None or not text:
            return 0
        if len(data) > _ACKED_BYTES or not text.isdigit() or len(text) > 20:
            log.warning("Spool: ignoring the unreadable acked sequence in %s: %s", self.path / "acked", shown(text))
            return 0
        return int(text)

    def _scan(self, fd: int, path: Path) -> Iterator[tuple[int, bytes, Location]]:
        from monitoring.v1 import monitoring_pb2 as pb

        size = os.fstat(fd).st_size
        end = 0
        for start, payload in read_frames(fd, size):
            try:
                seq = pb.MetricsData.FromString(payload).sequence
            except Exception:
                break
            yield seq, payload, Location(path, start, len(payload))
            end = start + len(payload)
        self.repaired_bytes += cut_tail(fd, end, size, f"Spool segment {path.name}")

    def _remove(self, name: str) -> None:
        try:
            self.dir.unlink(name)
        except OSError as exc:
            log.warning("Spool: cannot remove %s: %s", self.path / name, exc.strerror or exc)

    @property
    def last_sequence(self) -> int:
        """Highest sequence ever spooled (or acknowledged): new records continue after it."""
        return max([self.acked, *(s.last for s in self.segments)])

    # -- writing ---------------------------------------------------------------------------------

    def append(self, sequence: int, payload: bytes) -> Location:
        """Durably (see module docstring) append one record."""
        if self._fd is None or self._current_count >= self.segment_records:
            self._roll(sequence)
        assert self._fd is not None
        segment = self.segments[-1]
        offset = segment.size + FRAME_HEADER_BYTES
        write_frame(self._fd, payload, fsync=self.fsync)
        segment.size = offset + len(payload)
        segment.last = sequence
        self._current_count += 1
        return Location(segment.path, offset, len(payload))

    def _roll(self, first: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        name = f"seg-{first:020d}.log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            fd = self.dir.open_file(name, flags)
        except UnsafeStateDir as exc:  # not ours: remove the name (never what it points to), start afresh
            log.warning("Spool: replacing %s: %s", self.path / name, exc)
            fd = self.dir.open_file(name, flags, fresh=True)
        self._fd = fd
        self.segments.append(Segment(self.path / name, first=first, last=first - 1, size=os.fstat(fd).st_size))
        self._current_count = 0
        if self.fsync:
            self.dir.fsync()

    def read(self, location: Location) -> bytes | None:
        """The payload stored at ``location``; None (logged) if its segment is no longer a plain file."""
        try:
            fd = self.dir.open_file(location.segment.name, os.O_RDONLY)
        except (UnsafeStateDir, OSError) as exc:
            log.error("Spool: cannot read back a record from %s: %s", location.segment, exc)
            return None
        try:
            return os.pread(fd, location.length, location.offset)
        finally:
            os.close(fd)

    # -- acknowledging -------------------------------------------------------------------------------

    def release_through(self, sequence: int) -> None:
        """Everything up to ``sequence`` is no longer needed: persist that, delete whole segments."""
        if sequence <= self.acked:
            return
        self.acked = sequence
        self.dir.replace("acked", f"{sequence}\n".encode(), fsync=False)  # a lost ack means a resend
        while self.segments and self.segments[0].last <= sequence and not self._is_current(self.segments[0]):
            self._remove(self.segments.pop(0).path.name)

    def _is_current(self, segment: Segment) -> bool:
        return self._fd is not None and segment is self.segments[-1]

    def close(self) -> None:
        """Flush (with ``fsync``) and close the segment being written; idempotent."""
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._owns_dir and self._dir is not None:
            self._dir.close()
            self._dir = None

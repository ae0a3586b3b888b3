"""The on-disk part of the spool: append-only segment files of length+CRC framed records.

Layout under ``<state_dir>/spool/``::

    acked                          highest sequence known durable upstream (atomic replace)
    seg-00000000000000000001.log   records, the file named after its first sequence number

Each record is ``>II`` (payload length, CRC-32 of payload) followed by the serialized MetricsData,
written with a single ``write(2)`` on an ``O_APPEND`` descriptor *before* the record is sent. A
``kill -9`` at any moment therefore leaves every completed write intact; a torn or corrupt tail
(only possible on power loss) is detected by length/CRC at the next start and cut off. With
``fsync`` on, each append is also flushed to stable storage. A segment is deleted once every record
in it is acknowledged (or dropped by the bound). The framing functions at the end of this module
serve the command journal (:mod:`journal`) too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
#: What the framing adds to each payload.
FRAME_HEADER_BYTES = _HEADER.size
#: Larger than any record we write; a length beyond it means corruption.
MAX_RECORD_BYTES = 16 * 1024 * 1024


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
    """Segments of one agent's state directory (a single writer: the agent holds a lock)."""

    def __init__(self, directory: Path, *, segment_records: int = 1000, fsync: bool = True) -> None:
        self.dir = directory
        self.segment_records = segment_records
        self.fsync = fsync
        self.acked = 0
        self.segments: list[Segment] = []
        self._fd: int | None = None
        self._current_count = 0
        self.repaired_bytes = 0

    # -- start-up --------------------------------------------------------------------------------

    def open(self) -> Iterator[tuple[int, bytes, Location]]:
        """Scan and repair the segments; yields (sequence, payload, location) of unacked records."""
        self.dir.mkdir(parents=True, exist_ok=True)
        acked_file = self.dir / "acked"
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.acked = int(acked_file.read_text().strip() or 0)
        for path in sorted(self.dir.glob("seg-*.log")):
            segment = Segment(path, first=0, last=0, size=0)
            for seq, payload, location in self._scan(path):
                segment.first = segment.first or seq
                segment.last = seq
                segment.size = location.offset + location.length
                if seq > self.acked:
                    yield seq, payload, location
            if segment.last == 0 or segment.last <= self.acked:
                path.unlink(missing_ok=True)  # empty, or everything in it is acknowledged
                continue
            self.segments.append(segment)

    def _scan(self, path: Path) -> Iterator[tuple[int, bytes, Location]]:
        from monitoring.v1 import monitoring_pb2 as pb

        data = path.read_bytes()
        end = 0
        for start, payload in read_frames(data):
            try:
                seq = pb.MetricsData.FromString(payload).sequence
            except Exception:
                break
            yield seq, payload, Location(path, start, len(payload))
            end = start + len(payload)
        self.repaired_bytes += cut_tail(path, end, len(data), f"Spool segment {path.name}")

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
        offset = segment.size + _HEADER.size
        write_frame(self._fd, payload, fsync=self.fsync)
        segment.size = offset + len(payload)
        segment.last = sequence
        self._current_count += 1
        return Location(segment.path, offset, len(payload))

    def _roll(self, first: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        path = self.dir / f"seg-{first:020d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.segments.append(Segment(path, first=first, last=first - 1, size=os.fstat(self._fd).st_size))
        self._current_count = 0
        if self.fsync:
            fsync_dir(self.dir)

    @staticmethod
    def read(location: Location) -> bytes:
        """The payload stored at ``location``."""
        with location.segment.open("rb") as f:
            f.seek(location.offset)
            return f.read(location.length)

    # -- acknowledging -------------------------------------------------------------------------------

    def release_through(self, sequence: int) -> None:
        """Everything up to ``sequence`` is no longer needed: persist that, delete whole segments."""
        if sequence <= self.acked:
            return
        self.acked = sequence
        tmp = self.dir / "acked.tmp"
        tmp.write_text(f"{sequence}\n")
        tmp.replace(self.dir / "acked")
        while self.segments and self.segments[0].last <= sequence and not self._is_current(self.segments[0]):
            self.segments.pop(0).path.unlink(missing_ok=True)

    def _is_current(self, segment: Segment) -> bool:
        return self._fd is not None and segment is self.segments[-1]

    def close(self) -> None:
        """Flush (with ``fsync``) and close the segment being written; idempotent."""
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


# -- the framing, shared with the command journal -------------------------------------------------


def frame(payload: bytes) -> bytes:
    """``payload`` with its ``>II`` (length, CRC-32) header, ready for one ``write(2)``."""
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def write_frame(fd: int, payload: bytes, *, fsync: bool) -> None:
    """Append one framed ``payload`` to ``fd`` (opened ``O_APPEND``) in a single write, then fsync."""
    os.write(fd, frame(payload))
    if fsync:
        os.fsync(fd)


def read_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of each intact frame of ``data``, from the start up to the first torn or
    corrupt one (bad length or CRC); the caller cuts the file there (:func:`cut_tail`)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if length > MAX_RECORD_BYTES or len(payload) < length or zlib.crc32(payload) != crc:
            return
        yield start, payload
        offset = start + length


def cut_tail(path: Path, end: int, size: int, what: str) -> int:
    """Truncate ``path`` (``size`` bytes) to ``end``, the end of its last good frame; returns the bytes cut."""
    if end >= size:
        return 0
    log.warning("%s: cut %d bytes of torn or corrupt tail", what, size - end)
    with path.open("r+b") as f:
        f.truncate(end)
    return size - end


def fsync_dir(directory: Path) -> None:
    """Make a file created or renamed in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Length+CRC framed records, the format of spool segments (:mod:`spool_store`) and the command
journal (:mod:`journal`).

Each frame is ``>II`` (payload length, CRC-32 of payload) followed by the payload, appended with a
single ``write(2)``. Files are read back one frame at a time (:func:`read_frames`), so a huge or
corrupt file costs at most one frame of memory (:data:`MAX_RECORD_BYTES`), never the whole file.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
#: What the framing adds to each payload.
FRAME_HEADER_BYTES = _HEADER.size
#: Larger than any record we write; a length beyond it means corruption.
MAX_RECORD_BYTES = 16 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """``payload`` with its ``>II`` (length, CRC-32) header, ready for one ``write(2)``."""
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def write_frame(fd: int, payload: bytes, *, fsync: bool) -> None:
    """Append one framed ``payload`` to ``fd`` (opened ``O_APPEND``) in a single write, then fsync."""
    os.write(fd, frame(payload))
    if fsync:
        os.fsync(fd)


def read_frames(fd: int, size: int, max_payload: int = MAX_RECORD_BYTES) -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of each intact frame in the first ``size`` bytes of ``fd``, from the start
    up to the first torn or corrupt one (bad length or CRC); the caller cuts the file there
    (:func:`cut_tail`). One frame is in memory at a time."""
    offset = 0
    while offset + _HEADER.size <= size:
        header = os.pread(fd, _HEADER.size, offset)
        if len(header) < _HEADER.size:
            return
        length, crc = _HEADER.unpack(header)
        start = offset + _HEADER.size
        if length > max_payload or start + length > size:
            return
        payload = os.pread(fd, length, start)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return
        yield start, payload
        offset = start + length


def cut_tail(fd: int, end: int, size: int, what: str) -> int:
    """Truncate ``fd`` (``size`` bytes) to ``end``, the end of its last good frame; returns the bytes cut."""
    if end >= size:
        return 0
    log.warning("%s: cut %d bytes of torn or corrupt tail", what, size - end)
    os.ftruncate(fd, end)
    return size - end

"""The command journal: every command the agent accepted, its responses, and which were acknowledged.

``<state_dir>/command-journal`` is an append-only file of entries in the spool's framing
(:func:`spool_store.frame`: length, CRC-32, payload). Each entry is ``>cd`` (kind, Unix time)
followed by its body:

====  ==================================================  ======================================
kind  body                                                written
====  ==================================================  ======================================
R     a CommandResponseMessage not yet acknowledged       fsynced, *before* it is queued to send
A     ``>i`` status, then the command id: acknowledged    not fsynced (a lost ack means a resend)
F     a CommandResponseMessage already acknowledged       by compaction
S     a command id whose responses are forgotten          by compaction and migration
====  ==================================================  ======================================

A command's first response is its acceptance: DELIVERED (or an immediate REJECTED/EXPIRED) is
journaled before anything runs, so after a crash a command whose latest response is DELIVERED was
running when the agent died (:meth:`CommandJournal.interrupted`). At start (:meth:`load`) the
journal is replayed; a torn or corrupt tail is cut like the spool's, an intact entry that cannot be
decoded is skipped with a log line. Kept: the ids of the last ``remember_ids`` commands (so none runs
twice), the responses of the last ``remember_finals`` finished commands (a duplicate delivery is
answered with them) within ``max_bytes``, every running command and every unacknowledged response of
those. The file is rewritten (compacted) when it has grown to twice what is kept.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from monitor_agentd.dedup import REMEMBER, SeenCommands, read_seen_file
from monitor_agentd.spool_store import FRAME_HEADER_BYTES, cut_tail, frame, fsync_dir, read_frames, write_frame
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import shown

log = logging.getLogger(__name__)

#: Finished commands whose final response is kept to answer duplicate deliveries.
REMEMBER_FINALS = 1000
#: Upper bound of the responses kept (their stdout and stderr), in bytes.
MAX_BYTES = 32 * 1024 * 1024
#: The file is compacted once it is this much larger than what it holds, and twice as large.
COMPACT_MIN_BYTES = 1024 * 1024

RESPONSE, ACK, ANSWERED, SEEN = b"R", b"A", b"F", b"S"
_ENTRY = struct.Struct(">cd")
_ACK = struct.Struct(">i")

ResponseKey = tuple[str, int]  # (command id, status)


@dataclass
class Entry:
    """What the journal knows of one command: when it was accepted and its latest response."""

    command_id: str
    command: str
    requested_by: str
    accepted_at: float
    latest: pb.CommandResponseMessage

    @property
    def running(self) -> bool:
        """Accepted (DELIVERED) and not finished."""
        return self.latest.status == pb.DELIVERED


class CommandJournal:
    """The agent's durable record of commands (a single writer: the agent holds the state lock).

    Without a path it keeps the same state in memory only (tests, benchmarks).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        fsync: bool = True,
        remember_ids: int = REMEMBER,
        remember_finals: int = REMEMBER_FINALS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self._remember_finals = remember_finals
        self._max_bytes = max_bytes
        self._clock = clock
        self._seen = SeenCommands(remember_ids)
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._unacked: OrderedDict[ResponseKey, pb.CommandResponseMessage] = OrderedDict()
        self._bytes = 0  # serialized size of the latest responses kept
        self._interrupted: list[Entry] = []
        self._fd: int | None = None
        self._size = 0
        self._compact_at = COMPACT_MIN_BYTES
        #: Intact entries that could not be decoded at start (skipped), and bytes of torn tail cut.
        self.skipped = 0
        self.repaired_bytes = 0

    # -- start-up --------------------------------------------------------------------------------

    def load(self, legacy: Path | None = None) -> None:
        """Replay the journal (and, once, the ids of an older agent's ``commands-seen`` file ``legacy``)."""
        if self.path is None:
            return
        migrated = read_seen_file(legacy) if legacy is not None else []
        for command_id in migrated:
            self._seen.add(command_id)
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            # Never overwrite what could not be read: this run keeps its journal in memory only.
            log.error("Command journal: cannot read %s: %s (kept in memory only until a restart)", self.path, exc)
            self.path = None
            return
        end = 0
        for start, payload in read_frames(data):
            end = start + len(payload)
            try:
                self._apply(payload)
            except (ValueError, struct.error, DecodeError) as exc:
                self.skipped += 1
                log.warning("Command journal: skipped a corrupt entry at byte %d of %s (%s)", start, self.path, exc)
        try:
            self.repaired_bytes = cut_tail(self.path, end, len(data), f"Command journal {self.path}")
        except OSError as exc:
            log.error("Command journal: cannot repair %s: %s", self.path, exc)
        self._size = end
        dropped = self._enforce_bounds()
        self._interrupted = [e for e in self._entries.values() if e.running]
        compacted = bool(migrated or dropped or self._size >= self._compact_at) and self._compact()
        if migrated and compacted and legacy is not None:  # its ids are in the journal now
            legacy.unlink(missing_ok=True)
            log.info("Command journal: took over %d command ids from %s", len(migrated), legacy)
        if self._unacked:
            count = len(self._unacked)
            log.info("Command journal: %d unacknowledged response%s on disk will be sent first", count, _s(count))

    def _apply(self, payload: bytes) -> None:
        kind, at = _ENTRY.unpack_from(payload)
        body = payload[_ENTRY.size :]
        if kind == SEEN:
            self._seen.add(body.decode())
        elif kind in (RESPONSE, ANSWERED):
            response = pb.CommandResponseMessage.FromString(body)
            if not response.command_id:
                raise ValueError("response without command_id")
            self._remember(response, at, unacked=kind == RESPONSE)
        elif kind == ACK:
            (status,) = _ACK.unpack_from(body)
            self._unacked.pop((body[_ACK.size :].decode(), status), None)
        else:
            raise ValueError(f"unknown entry kind {kind!r}")

    # -- queries ---------------------------------------------------------------------------------

    def seen(self, command_id: str) -> bool:
        """True if ``command_id`` was accepted before (it must not run again)."""
        return command_id in self._seen or command_id in self._entries

    def latest(self, command_id: str) -> pb.CommandResponseMessage | None:
        """The latest response to ``command_id`` (final, or DELIVERED while running), if still kept."""
        entry = self._entries.get(command_id)
        return entry.latest if entry is not None else None

    def interrupted(self) -> list[Entry]:
        """Commands that were running when the agent stopped and have no final response yet."""
        return [e for e in self._interrupted if e.running]

    def unacknowledged(self) -> list[pb.CommandResponseMessage]:
        """Responses not acknowledged by the server, oldest first."""
        return list(self._unacked.values())

    # -- writing ---------------------------------------------------------------------------------

    def record(self, response: pb.CommandResponseMessage) -> None:
        """Keep ``response`` until acknowledged: on disk (fsync) first, so call it before sending."""
        at = self._clock()
        self._remember(response, at, unacked=True)
        self._append(_ENTRY.pack(RESPONSE, at) + response.SerializeToString(), fsync=self.fsync)
        self._enforce_bounds()

    def ack(self, command_id: str, status: int) -> None:
        """The server stored (or permanently refused) this response: it is not resent after a restart."""
        if self._unacked.pop((command_id, status), None) is not None:
            self._append(_ENTRY.pack(ACK, self._clock()) + _ACK.pack(status) + command_id.encode(), fsync=False)

    def _remember(self, response: pb.CommandResponseMessage, at: float, *, unacked: bool) -> None:
        command_id = response.command_id
        self._seen.add(command_id)
        entry = self._entries.get(command_id)
        if entry is None:
            self._entries[command_id] = Entry(command_id, response.command, response.requested_by, at, response)
            self._bytes += response.ByteSize()
        elif response.status != pb.DELIVERED or entry.running:  # a late DELIVERED never hides the final
            self._bytes += response.ByteSize() - entry.latest.ByteSize()
            entry.latest = response
        if unacked:
            self._unacked[(command_id, response.status)] = response

    def _enforce_bounds(self) -> int:
        """Forget the oldest finished commands beyond the bounds (their ids stay seen); returns how many."""
        finished = [e for e in self._entries.values() if not e.running]
        dropped = 0
        while finished and (len(finished) > self._remember_finals or self._bytes > self._max_bytes):
            victim = finished.pop(0)
            del self._entries[victim.command_id]
            self._bytes -= victim.latest.ByteSize()
            dropped += 1
            for status in {pb.DELIVERED, victim.latest.status}:
                if self._unacked.pop((victim.command_id, status), None) is not None:
                    log.warning(
                        "Command journal full: the unacknowledged %s response to command %s is not kept on disk",
                        pb.CommandStatus.Name(status),
                        shown(victim.command_id),
                    )
        return dropped

    def _append(self, payload: bytes, *, fsync: bool) -> None:
        if self.path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                if self.fsync:
                    fsync_dir(self.path.parent)
            write_frame(self._fd, payload, fsync=fsync)
        except OSError as exc:
            log.error("Command journal: cannot write to %s: %s (kept in memory only)", self.path, exc)
            return
        self._size += FRAME_HEADER_BYTES + len(payload)
        if self._size >= self._compact_at:
            self._compact()

    def _compact(self) -> bool:
        """Rewrite the file with only what is kept (atomic replace), so it does not grow forever."""
        assert self.path is not None
        frames = [frame(_ENTRY.pack(SEEN, 0.0) + i.encode()) for i in self._seen if i not in self._entries]
        for entry in self._entries.values():
            delivered = self._unacked.get((entry.command_id, pb.DELIVERED))
            if delivered is not None and not entry.running:  # finished, its DELIVERED still unacknowledged
                frames.append(frame(_ENTRY.pack(RESPONSE, entry.accepted_at) + delivered.SerializeToString()))
            kind = RESPONSE if (entry.command_id, entry.latest.status) in self._unacked else ANSWERED
            frames.append(frame(_ENTRY.pack(kind, entry.accepted_at) + entry.latest.SerializeToString()))
        data = b"".join(frames)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            tmp.replace(self.path)
            if self.fsync:
                fsync_dir(self.path.parent)
        except OSError as exc:
            log.warning("Command journal: cannot compact %s: %s", self.path, exc)
            self._compact_at = self._size + COMPACT_MIN_BYTES  # try again later, not on every write
            return False
        self.close()  # the next append opens the new file
        self._size = len(data)
        self._compact_at = max(2 * len(data), len(data) + COMPACT_MIN_BYTES)
        return True

    def close(self) -> None:
        """Close the file (idempotent); everything written is on disk for the next start."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _s(count: int) -> str:
    return "" if count == 1 else "s"

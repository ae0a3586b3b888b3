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

The file is opened without following links and read one entry at a time (:mod:`journal_file`);
one larger than what it can grow to (:attr:`CommandJournal.max_file_bytes`) is not read: that run
keeps its journal in memory only. The bounds are enforced while replaying, and a replayed id that
is not a valid command id (:func:`monitoring_common.untrusted.is_id`) is skipped like a corrupt entry.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from monitor_agentd.dedup import REMEMBER, SeenCommands, read_seen_file
from monitor_agentd.errors import StateDirError, UnsafeStateDir
from monitor_agentd.framing import MAX_RECORD_BYTES, frame
from monitor_agentd.journal_file import JournalFile
from monitor_agentd.statefiles import SafeDir
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import LogBudget, is_id, shown

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

_SKIPPED = "Command journal: skipped a corrupt entry at byte %d of %s (%s)"

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

    Without a path it keeps the same state in memory only (tests, benchmarks). ``directory`` is
    ``path``'s parent, already open (:meth:`StateDir.dir`); without it the parent is opened here.
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
        directory: SafeDir | None = None,
    ) -> None:
        self.path = path
        self._dir = directory
        self.fsync = fsync
        self._remember_finals = remember_finals
        self._max_bytes = max_bytes
        self._clock = clock
        self._seen = SeenCommands(remember_ids)
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._unacked: OrderedDict[ResponseKey, pb.CommandResponseMessage] = OrderedDict()
        self._bytes = 0  # serialized size of the latest responses kept
        self._interrupted: list[Entry] = []
        self._file: JournalFile | None = None
        self._compact_at = COMPACT_MIN_BYTES
        #: What the file can grow to: twice what is kept (ids, responses), plus one entry.
        self.max_file_bytes = 2 * (max_bytes + remember_ids * 256 + remember_finals * 4096) + 2 * MAX_RECORD_BYTES
        #: Intact entries that could not be decoded at start (skipped), and bytes of torn tail cut.
        self.skipped = 0
        self.repaired_bytes = 0
        self._full = LogBudget()

    # -- start-up --------------------------------------------------------------------------------

    def load(self, legacy: Path | None = None) -> None:
        """Replay the journal (and, once, the ids of an older agent's ``commands-seen`` file ``legacy``)."""
        if self.path is None:
            return
        migrated = read_seen_file(legacy, self._dir) if legacy is not None else []
        for command_id in migrated:
            self._seen.add(command_id)
        try:
            for count, (start, payload) in enumerate(self._journal_file().read(), 1):
                try:
                    self._apply(payload)
                except (ValueError, struct.error, DecodeError) as exc:
                    self.skipped += 1
                    self._full.log(log, logging.WARNING, _SKIPPED, start, self.path, exc)
                if count % 1000 == 0:  # memory stays within the bounds however long the file
                    self._enforce_bounds(running=True)
        except UnsafeStateDir:
            raise
        except (OSError, StateDirError) as exc:
            # Never overwrite what could not be read: this run keeps its journal in memory only.
            log.error("Command journal: cannot read %s: %s (kept in memory only until a restart)", self.path, exc)
            self.close()
            self.path = None
            return
        file = self._journal_file()
        self.repaired_bytes = file.repaired_bytes
        dropped = self._enforce_bounds(running=True)
        self._interrupted = [e for e in self._entries.values() if e.running]
        compacted = bool(migrated or dropped or file.size >= self._compact_at) and self._compact()
        if migrated and compacted and legacy is not None:  # its ids are in the journal now
            file.directory.unlink(legacy.name)
            log.info("Command journal: took over %d command ids from %s", len(migrated), legacy)
        if self._unacked:
            count = len(self._unacked)
            log.info("Command journal: %d unacknowledged response%s on disk will be sent first", count, _s(count))

    def _apply(self, payload: bytes) -> None:
        kind, at = _ENTRY.unpack_from(payload)
        body = payload[_ENTRY.size :]
        if kind == SEEN:
            self._seen.add(_valid_id(body.decode()))
        elif kind in (RESPONSE, ANSWERED):
            response = pb.CommandResponseMessage.FromString(body)
            _valid_id(response.command_id)
            self._remember(response, at, unacked=kind == RESPONSE)
        elif kind == ACK:
            (status,) = _ACK.unpack_from(body)
            self._unacked.pop((_valid_id(body[_ACK.size :].decode()), status), None)
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

    def _enforce_bounds(self, *, running: bool = False) -> int:
        """Forget the oldest finished commands beyond the bounds (their ids stay seen); returns how
        many. With ``running`` (replaying a file) also running ones beyond ``remember_finals``."""
        finished = [e for e in self._entries.values() if not e.running]
        victims = []
        while finished and (len(finished) > self._remember_finals or self._bytes > self._max_bytes):
            victims.append(victim := finished.pop(0))
            self._bytes -= victim.latest.ByteSize()
        if running:  # no agent runs that many at once: a file that says so is not believed
            busy = [e for e in self._entries.values() if e.running]
            victims += busy[: max(0, len(busy) - self._remember_finals)]
        for victim in victims:
            if victim.running:
                self._bytes -= victim.latest.ByteSize()
            del self._entries[victim.command_id]
            for status in {pb.DELIVERED, victim.latest.status}:
                if self._unacked.pop((victim.command_id, status), None) is not None:
                    self._full.log(
                        log,
                        logging.WARNING,
                        "Command journal full: the unacknowledged %s response to command %s is not kept on disk",
                        pb.CommandStatus.Name(status),
                        shown(victim.command_id),
                    )
        return len(victims)

    def _journal_file(self) -> JournalFile:
        if self._file is None:
            assert self.path is not None
            self._file = JournalFile(self.path, self._dir, fsync=self.fsync, max_file_bytes=self.max_file_bytes)
        return self._file

    def _append(self, payload: bytes, *, fsync: bool) -> None:
        if self.path is None:
            return
        try:
            self._journal_file().append(payload, fsync=fsync)
        except (OSError, StateDirError) as exc:
            log.error("Command journal: cannot write to %s: %s (kept in memory only)", self.path, exc)
            return
        if self._journal_file().size >= self._compact_at:
            self._compact()

    def _compact(self) -> bool:
        """Rewrite the file with only what is kept (atomic replace), so it does not grow forever."""
        frames = [frame(_ENTRY.pack(SEEN, 0.0) + i.encode()) for i in self._seen if i not in self._entries]
        for entry in self._entries.values():
            delivered = self._unacked.get((entry.command_id, pb.DELIVERED))
            if delivered is not None and not entry.running:  # finished, its DELIVERED still unacknowledged
                frames.append(frame(_ENTRY.pack(RESPONSE, entry.accepted_at) + delivered.SerializeToString()))
            kind = RESPONSE if (entry.command_id, entry.latest.status) in self._unacked else ANSWERED
            frames.append(frame(_ENTRY.pack(kind, entry.accepted_at) + entry.latest.SerializeToString()))
        data = b"".join(frames)
        file = self._journal_file()
        try:
            file.rewrite(data)
        except (OSError, StateDirError) as exc:
            log.warning("Command journal: cannot compact %s: %s", self.path, exc)
            self._compact_at = file.size + COMPACT_MIN_BYTES  # try again later, not on every write
            return False
        self._compact_at = max(2 * len(data), len(data) + COMPACT_MIN_BYTES)
        return True

    def close(self) -> None:
        """Close the file (idempotent); everything written is on disk for the next start."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _valid_id(command_id: str) -> str:
    if not is_id(command_id):
        raise ValueError(f"invalid command id {shown(command_id, 40)}")
    return command_id


def _s(count: int) -> str:
    return "" if count == 1 else "s"

"""Records kept until the server acknowledged them, and the cursor of what to send next.

Every collected record enters the spool -- written to the on-disk store (:mod:`spool_store`)
before it is sent -- and leaves it only on a positive ack, or when the bound is reached: then the
oldest record is dropped, counted and logged, and the count travels upstream in heartbeats. The
newest ``memory_records`` records are also kept parsed in memory; older ones are read back from
disk when replayed. At start at most ``max_records`` records are taken from disk, however many
are there (the oldest beyond are dropped and counted). After a reconnect (or a retriable negative
ack) :meth:`Spool.rewind` puts every unacknowledged record back in front of the send cursor, so
they are replayed in sequence order. Without a store (tests, benchmarks) the spool is memory only.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

from monitor_agentd.spool_store import Location, SpoolStore
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


class Spool:
    """Unacknowledged MetricsData by sequence number, bounded, with a send cursor."""

    def __init__(self, max_records: int, store: SpoolStore | None = None, memory_records: int = 1000) -> None:
        self.max_records = max_records
        self.memory_records = memory_records
        self._store = store
        self._index: OrderedDict[int, Location | None] = OrderedDict()  # every unacked sequence, in order
        self._cache: OrderedDict[int, pb.MetricsData] = OrderedDict()  # the newest ones, parsed
        self._to_send: deque[int] = deque()
        self._holding = False
        self._highest = 0
        self.dropped = 0
        self.acked = 0
        self.last_acked = 0
        #: Unacknowledged records found on disk at start (sent before anything new).
        self.replayed_from_disk = 0

    def load(self) -> int:
        """Read the unacknowledged records left on disk; returns the last sequence ever used."""
        if self._store is None:
            return 0
        for seq, payload, location in self._store.open():
            self._index[seq] = location
            self._remember(pb.MetricsData.FromString(payload))
            self.replayed_from_disk += 1
            if len(self._index) > self.max_records:  # more on disk than the bound: the oldest go
                oldest, _ = self._index.popitem(last=False)
                self._cache.pop(oldest, None)
                self.dropped += 1
        if self.dropped:
            log.warning("Spool: %d records on disk beyond the bound (%d) dropped", self.dropped, self.max_records)
        self._highest = self._store.last_sequence
        self.last_acked = self._store.acked
        if self._index:
            log.info(
                "Spool: %d unacknowledged records on disk (#%d..#%d) will be sent first",
                len(self._index),
                next(iter(self._index)),
                self._highest,
            )
        self._to_send = deque(self._index)
        return self._highest

    def __len__(self) -> int:
        return len(self._index)

    def add(self, record: pb.MetricsData) -> None:
        """Keep ``record`` (on disk first) and queue it for sending, dropping the oldest if full."""
        while len(self._index) >= self.max_records:
            seq, _ = self._index.popitem(last=False)
            self._cache.pop(seq, None)
            self.dropped += 1
            log.warning(
                "Spool full (%d records): dropped unacknowledged metrics #%d (%d dropped so far)",
                self.max_records,
                seq,
                self.dropped,
            )
        location = self._store.append(record.sequence, record.SerializeToString()) if self._store else None
        self._index[record.sequence] = location
        self._highest = max(self._highest, record.sequence)
        self._remember(record)
        self._to_send.append(record.sequence)
        self._release()

    def _remember(self, record: pb.MetricsData) -> None:
        self._cache[record.sequence] = record
        while len(self._cache) > self.memory_records:
            self._cache.popitem(last=False)

    def next_to_send(self) -> pb.MetricsData | None:
        """The next record for the current stream, or None if nothing is waiting."""
        while self._to_send and not self._holding:
            seq = self._to_send.popleft()
            if seq not in self._index:  # acked or dropped meanwhile
                continue
            record = self._cache.get(seq)
            if record is not None:
                return record
            location = self._index[seq]
            payload = self._store.read(location) if location is not None and self._store is not None else None
            if payload is not None:
                return pb.MetricsData.FromString(payload)
        return None

    def hold(self) -> None:
        """Stop handing out records until :meth:`rewind` (after a retriable negative ack).

        Resending everything unacknowledged from the oldest, rather than just the refused record,
        keeps each agent's records in sequence order in Kafka.
        """
        self._holding = True

    def rewind(self) -> None:
        """A new stream starts: everything unacknowledged is sent again, oldest first."""
        self._holding = False
        self._to_send = deque(self._index)

    def ack(self, first: int, last: int) -> int:
        """Forget records ``first..last`` (inclusive); returns how many were still held."""
        removed = 0
        if last - first < len(self._index):
            seqs = [s for s in range(first, last + 1) if s in self._index]
        else:
            seqs = [s for s in self._index if first <= s <= last]
        for seq in seqs:
            del self._index[seq]
            self._cache.pop(seq, None)
            removed += 1
        self.acked += removed
        self.last_acked = max(self.last_acked, last)
        self._release()
        return removed

    def discard(self, first: int, last: int) -> None:
        """The server refused ``first..last`` permanently: drop and count them."""
        for seq in range(first, last + 1):
            if seq in self._index:
                del self._index[seq]
                self._cache.pop(seq, None)
                self.dropped += 1
                log.error("Server permanently refused metrics #%d; dropped", seq)
        self._release()

    def _release(self) -> None:
        # Everything below the oldest record still held is done with, on disk too.
        if self._store is not None:
            done = next(iter(self._index)) - 1 if self._index else self._highest
            self._store.release_through(done)

    @property
    def repaired_bytes(self) -> int:
        """Bytes of torn or corrupt tail the store cut off at start (0 without a store)."""
        return self._store.repaired_bytes if self._store is not None else 0

    def close(self) -> None:
        """Close the on-disk store; everything unacknowledged stays there for the next start."""
        if self._store is not None:
            self._store.close()

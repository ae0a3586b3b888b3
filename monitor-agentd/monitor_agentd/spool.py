"""Records kept until the server acknowledged them, and the cursor of what to send next.

Every collected record enters the spool and leaves it only on a positive ack (or when the bound is
reached: then the oldest record is dropped, counted and logged, and the count travels upstream in
heartbeats). After a reconnect (or a retriable negative ack) :meth:`Spool.rewind` puts every unacknowledged record back in
front of the send cursor, so they are replayed in sequence order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque

from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


class Spool:
    """Unacknowledged MetricsData by sequence number, bounded, with a send cursor."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._records: OrderedDict[int, pb.MetricsData] = OrderedDict()
        self._to_send: deque[int] = deque()
        self._holding = False
        self.changed = asyncio.Event()
        self.dropped = 0
        self.acked = 0
        self.last_acked = 0

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: pb.MetricsData) -> None:
        """Keep ``record`` and queue it for sending (dropping the oldest one if full)."""
        while len(self._records) >= self.max_records:
            seq, _ = self._records.popitem(last=False)
            self.dropped += 1
            log.warning(
                "Spool full (%d records): dropped unacknowledged metrics #%d (%d dropped so far)",
                self.max_records,
                seq,
                self.dropped,
            )
        self._records[record.sequence] = record
        self._to_send.append(record.sequence)
        self.changed.set()

    def next_to_send(self) -> pb.MetricsData | None:
        """The next record for the current stream, or None if nothing is waiting."""
        while self._to_send and not self._holding:
            record = self._records.get(self._to_send.popleft())
            if record is not None:  # may have been acked or dropped meanwhile
                return record
        return None

    def rewind(self) -> None:
        """A new stream starts: everything unacknowledged is sent again, oldest first."""
        self._holding = False
        self._to_send = deque(self._records)
        if self._to_send:
            self.changed.set()

    def ack(self, first: int, last: int) -> int:
        """Forget records ``first..last`` (inclusive); returns how many were still held."""
        removed = 0
        if last - first < len(self._records):
            for seq in range(first, last + 1):
                if self._records.pop(seq, None) is not None:
                    removed += 1
        else:
            for seq in [s for s in self._records if first <= s <= last]:
                del self._records[seq]
                removed += 1
        self.acked += removed
        self.last_acked = max(self.last_acked, last)
        if not self._records:
            self.changed.set()
        return removed

    def hold(self) -> None:
        """Stop handing out records until :meth:`rewind` (after a retriable negative ack).

        Resending everything unacknowledged from the oldest, rather than just the refused record,
        keeps each agent's records in sequence order in Kafka.
        """
        self._holding = True

    def discard(self, first: int, last: int) -> None:
        """The server refused ``first..last`` permanently: drop and count them."""
        for seq in range(first, last + 1):
            if self._records.pop(seq, None) is not None:
                self.dropped += 1
                log.error("Server permanently refused metrics #%d; dropped", seq)
        if not self._records:
            self.changed.set()

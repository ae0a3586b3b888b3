"""What monitord knows about how each command ended, and the answers it still owes.

Both are derived from Kafka, never from process memory alone: the ledger learns an outcome only
from a record read back from ``command-responses``, and what is owed is re-derived on every start
by replaying ``commands`` and ``command-responses`` over the maximum TTL (see
:mod:`monitord.command_intake`). Every instance owes the same answers; only the instance whose
turn it is for the command's partition (:mod:`monitord.answer_duty`) writes them, so a command
gets exactly one answer from monitord.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Container
from dataclasses import dataclass

from monitord.command_records import FINAL_STATUSES
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)

#: Outcomes remembered at most (the oldest are forgotten first).
MAX_OUTCOMES = 1_000_000
#: Which agent a command is for, remembered for this many commands (the newest).
MAX_AGENTS_KNOWN = 200_000


@dataclass
class Owed:
    """An answer monitord itself must write (EXPIRED, INVALID) for one command."""

    command: pb.CommandMessage
    status: pb.CommandStatus.ValueType
    message: str
    partition: int
    due: float  # wall clock: not before
    written_at: float | None = None


class CommandLedger:
    """Outcomes read from Kafka (DELIVERED or final, per command id) and owed answers; loop-confined."""

    def __init__(self, clock: Callable[[], float], remember_seconds: float, max_owed: int) -> None:
        self._clock = clock
        self._remember = remember_seconds
        self._max_owed = max_owed
        self._outcomes: OrderedDict[str, tuple[pb.CommandStatus.ValueType, float]] = OrderedDict()
        self._owed: OrderedDict[str, Owed] = OrderedDict()
        self._agents: OrderedDict[str, str] = OrderedDict()  # command id -> the agent it is for

    def __len__(self) -> int:
        return len(self._owed)

    def outcome(self, command_id: str) -> pb.CommandStatus.ValueType | None:
        """DELIVERED or the first final status read from Kafka for ``command_id``, if any."""
        known = self._outcomes.get(command_id)
        return known[0] if known else None

    def final(self, command_id: str) -> pb.CommandStatus.ValueType | None:
        """The first final status read from Kafka for ``command_id``, if any."""
        status = self.outcome(command_id)
        return status if status in FINAL_STATUSES else None

    def note_agent(self, command_id: str, agent_id: str) -> None:
        """``command_id`` is for ``agent_id`` (read from ``commands``); bounded, oldest forgotten."""
        self._agents[command_id] = agent_id
        self._agents.move_to_end(command_id)
        while len(self._agents) > MAX_AGENTS_KNOWN:
            self._agents.popitem(last=False)

    def agent_of(self, command_id: str) -> str | None:
        """The agent ``command_id`` was for, if this instance read the command (recently enough)."""
        return self._agents.get(command_id)

    def owes(self, command_id: str) -> bool:
        return command_id in self._owed

    def record(self, command_id: str, status: pb.CommandStatus.ValueType) -> None:
        """A response read from Kafka: the first final status wins; either kind settles what is owed."""
        if status != pb.DELIVERED and status not in FINAL_STATUSES:
            return
        self._owed.pop(command_id, None)
        if self.final(command_id) is not None:
            return
        self._outcomes[command_id] = (status, self._clock())
        self._outcomes.move_to_end(command_id)
        while len(self._outcomes) > MAX_OUTCOMES:
            self._outcomes.popitem(last=False)

    def settle(self, command_id: str) -> None:
        """The agent answered (seen on its stream): whatever monitord owed is no longer owed."""
        self._owed.pop(command_id, None)

    def owe(self, owed: Owed) -> None:
        """Owe ``owed`` unless the command already has an outcome (bounded: the oldest goes first)."""
        command_id = owed.command.command_id
        if self.outcome(command_id) is not None or command_id in self._owed:
            return
        self._owed[command_id] = owed
        while len(self._owed) > self._max_owed:
            _, dropped = self._owed.popitem(last=False)
            log.warning(
                "✗ More than %d answers owed: dropped the %s answer of command %s",
                self._max_owed,
                pb.CommandStatus.Name(dropped.status),
                dropped.command.command_id,
            )

    def due(self, owned: Container[int]) -> list[Owed]:
        """Owed answers of partitions in ``owned`` to write now: due, and not written yet (or the
        write failed, :meth:`unwritten`). Each stays owed until it is read back from Kafka."""
        now = self._clock()
        ready = []
        for owed in self._owed.values():
            if owed.partition in owned and owed.due <= now and owed.written_at is None:
                owed.written_at = now
                ready.append(owed)
        return ready

    def unwritten(self, command_id: str) -> None:
        """Kafka refused the answer written for ``command_id``: write it again when next due."""
        owed = self._owed.get(command_id)
        if owed is not None:
            owed.written_at = None

    def forget_old(self) -> None:
        """Drop outcomes older than the longest a command can live (nothing can refer to them)."""
        cutoff = self._clock() - self._remember
        while self._outcomes and next(iter(self._outcomes.values()))[1] < cutoff:
            self._outcomes.popitem(last=False)

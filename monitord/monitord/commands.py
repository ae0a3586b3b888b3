"""Command routing: from the ``commands`` topic to the agent's open stream, at once.

Every monitord instance reads every command (:mod:`monitord.command_intake`: no consumer group,
and on start a replay of ``commands`` and ``command-responses`` over the maximum TTL rebuilds
what is held). The instance holding the agent's stream writes the command to it immediately; the
others hold it. Held commands are delivered when the agent connects (to whichever instance), and
dropped as soon as any instance reports the command DELIVERED or final on ``command-responses``.
A command nobody delivered by its deadline (plus ``answer_grace_seconds``, time for an agent's
DELIVERED still on its way) is owed an EXPIRED answer, a record that is not a valid command an
INVALID one (:mod:`monitord.command_ledger`); the instance whose turn it is for the record's
partition writes it. The agent de-duplicates by command id: delivered twice, a command runs once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from monitord import records
from monitord.command_answers import answer, salvage
from monitord.command_ledger import CommandLedger, Owed
from monitord.command_parse import auto_id, deadline_of, parse
from monitord.command_records import FINAL_STATUSES
from monitord.config import CommandsSection
from monitord.errors import InvalidCommand
from monitord.publishers import ResponsePublisher
from monitord.session import Session
from monitord.sessions import SessionRegistry
from monitord.stats import RouterStats
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import LogBudget, shown

log = logging.getLogger(__name__)

#: Outcomes are remembered this much longer than the longest a command can live.
REMEMBER_MARGIN_SECONDS = 600.0


@dataclass
class Held:
    """A command waiting for its agent (or for the agent's DELIVERED)."""

    command: pb.CommandMessage
    deadline: float  # wall clock
    partition: int
    size: int  # encoded bytes (the hold is bounded in bytes too)


class CommandRouter:
    """Holds, pushes and expires commands; event-loop confined."""

    def __init__(
        self,
        cfg: CommandsSection,
        sessions: SessionRegistry,
        responses: ResponsePublisher,
        server_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._sessions = sessions
        self._responses = responses
        self._server_id = server_id
        self._clock = clock
        self._held: dict[str, OrderedDict[str, Held]] = {}
        self._held_bytes = 0
        self._refused = LogBudget()
        self.ledger = CommandLedger(clock, cfg.max_ttl_seconds + REMEMBER_MARGIN_SECONDS, cfg.max_pending_total)
        self._owned: frozenset[int] = frozenset()
        self._tasks: set[asyncio.Task[None]] = set()
        #: False while the start-up replay runs: nothing is pushed or answered before it ends.
        self.live = False
        self.stats = RouterStats()

    def reconfigure(self, cfg: CommandsSection) -> None:
        """Reload: new TTLs and bounds apply to commands read from now on."""
        self._cfg = cfg

    @property
    def held(self) -> int:
        """Commands held now, for all agents."""
        return sum(len(q) for q in self._held.values())

    def _count_held(self) -> None:
        self.stats.held = self.held
        self.stats.owed = len(self.ledger)

    # -- input -----------------------------------------------------------------------------------

    def on_record(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: records.Headers | None,
        *,
        partition: int = 0,
        offset: int = -1,
        written_at: float | None = None,
    ) -> None:
        """A record from the commands topic (``written_at``: its Kafka timestamp)."""
        written = self._clock() if written_at is None else written_at
        fallback = auto_id(partition, offset) if offset >= 0 else ""
        try:
            command = parse(key, value, headers, self._cfg, written, fallback_id=fallback)
        except InvalidCommand as exc:
            if self.live:
                self._refused.log(log, logging.WARNING, "✗ Invalid command record (key '%s'): %s", shown(key), exc)
            if value is not None and len(value) <= self._cfg.max_record_bytes:
                self._owe_invalid(key, value, str(exc), partition)
            return
        command_id = command.command_id
        known = self.ledger.outcome(command_id)
        if known is not None or self.ledger.owes(command_id):
            if self.live:
                seen = pb.CommandStatus.Name(known) if known is not None else "answer owed"
                log.info("Command %s read again (already %s): not delivered again", command_id, seen)
            return
        deadline = deadline_of(command, self._cfg, written)
        if deadline <= self._clock():
            due = deadline + self._cfg.answer_grace_seconds
            self._owe(command, pb.EXPIRED, "expired before it was delivered", partition, due)
            return
        queue = self._held.setdefault(command.agent_id, OrderedDict())
        if command_id in queue:
            return
        self._make_room(queue)
        held = Held(command, deadline, partition, command.ByteSize())
        queue[command_id] = held
        self._held_bytes += held.size
        self.ledger.note_agent(command_id, command.agent_id)
        self._count_held()
        if not self.live:
            return
        session = self._sessions.get(command.agent_id)
        if session is not None:
            self._push(session, held)
        else:
            log.info(
                "Command %s (%s) for agent '%s' held: agent not connected here",
                command_id,
                shown(command.command),
                command.agent_id,
            )

    def on_response(self, response: pb.CommandResponseMessage, *, from_kafka: bool = False) -> None:
        """A response read from command-responses (``from_kafka``) or passing through a stream."""
        if response.status != pb.DELIVERED and response.status not in FINAL_STATUSES:
            return
        if not self.responds_for_its_own(response):
            return  # another agent's command: it must not settle it (logged once by the budget)
        if from_kafka:
            self.ledger.record(response.command_id, response.status)
        else:
            self.ledger.settle(response.command_id)
        queue = self._held.get(response.agent_id)
        held = queue.pop(response.command_id, None) if queue is not None else None
        if held is not None:
            self._held_bytes -= held.size
        if queue is not None and not queue:
            del self._held[response.agent_id]
        self._count_held()

    def replay_done(self) -> None:
        """The start-up replay reached the end of both topics: deliver what is held to who is here."""
        self.live = True
        for session in self._sessions:
            self.on_connect(session)
        self._count_held()
        log.info("Commands: %d held for agents, %d answers owed after the replay", self.held, len(self.ledger))

    def set_owned(self, partitions: frozenset[int]) -> None:
        """The partitions of the commands topic this instance writes monitord's answers for."""
        self._owned = partitions
        self.stats.partitions_owned = len(partitions)

    def on_connect(self, session: Session) -> None:
        """An agent opened a stream here: deliver what is held for it (again, if sent before)."""
        if not self.live:
            return  # delivered when the replay ends
        for held in list(self._held.get(session.agent_id, {}).values()):
            self._push(session, held)

    def responds_for_its_own(self, response: pb.CommandResponseMessage) -> bool:
        """Whether ``response`` is from the agent its command was for (as far as known) or monitord:
        one agent cannot end another's command."""
        owner = self.ledger.agent_of(response.command_id)
        if owner is None or owner == response.agent_id or response.reported_by.startswith("monitord:"):
            return True
        self._refused.log(
            log,
            logging.WARNING,
            "✗ Agent '%s' answered command %s, which is agent '%s''s: ignored",
            shown(response.agent_id),
            shown(response.command_id),
            owner,
        )
        return False

    def final_status(self, command_id: str) -> pb.CommandStatus.ValueType | None:
        """The final status Kafka already has for ``command_id`` (a later, different one is not written)."""
        return self.ledger.final(command_id)

    # -- delivery --------------------------------------------------------------------------------

    def _push(self, session: Session, held: Held) -> None:
        self.stats.pushed += 1
        task = asyncio.get_running_loop().create_task(self._write(session, held.command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, session: Session, command: pb.CommandMessage) -> None:
        try:
            await session.send(pb.ServerMessage(command=command))
            log.info(
                "→ Pushed command %s (%s) to agent '%s'", command.command_id, shown(command.command), session.agent_id
            )
        except Exception as exc:
            log.info(
                "Could not push command %s to '%s' (%s); held until it reconnects",
                command.command_id,
                session.agent_id,
                exc,
            )

    def _make_room(self, queue: OrderedDict[str, Held]) -> None:
        while (
            len(queue) >= self._cfg.max_pending_per_agent
            or self.held >= self._cfg.max_pending_total
            or self._held_bytes >= self._cfg.max_pending_bytes
        ):
            victim_queue = queue if len(queue) >= self._cfg.max_pending_per_agent else self._largest_queue()
            if not victim_queue:
                return
            _, held = victim_queue.popitem(last=False)
            self._held_bytes -= held.size
            message = "dropped: too many commands held for agents that are not connected"
            self._owe(held.command, pb.EXPIRED, message, held.partition, self._clock())

    def _largest_queue(self) -> OrderedDict[str, Held]:
        return max(self._held.values(), key=len, default=OrderedDict())

    # -- expiry and monitord's own answers ---------------------------------------------------------

    async def run_expiry(self, period: float = 0.5) -> None:
        """Expire held commands and write owed answers (runs until cancelled)."""
        while True:
            await asyncio.sleep(period)
            self.expire_due()

    def expire_due(self) -> None:
        now = self._clock()
        for agent_id in list(self._held):
            queue = self._held[agent_id]
            for command_id in [c for c, h in queue.items() if h.deadline + self._cfg.answer_grace_seconds <= now]:
                held = queue.pop(command_id)
                self._held_bytes -= held.size
                # Pushed but never confirmed DELIVERED: the agent refuses it after the deadline too.
                message = "agent did not connect before the command expired"
                self._owe(held.command, pb.EXPIRED, message, held.partition, now)
            if not queue:
                del self._held[agent_id]
        self._count_held()
        if self.live:
            for owed in self.ledger.due(self._owned):
                self._write_answer(owed)
        self.ledger.forget_old()

    def _owe(
        self,
        command: pb.CommandMessage,
        status: pb.CommandStatus.ValueType,
        message: str,
        partition: int,
        due: float,
    ) -> None:
        self.ledger.owe(Owed(command, status, message, partition, due))
        self._count_held()

    def _owe_invalid(self, key: bytes | None, value: bytes, why: str, partition: int) -> None:
        answered = salvage(key, value, self._cfg)
        if answered is not None:  # else nothing to correlate an answer with (or not safely): logged only
            self._owe(answered, pb.INVALID, why, partition, self._clock())

    def _write_answer(self, owed: Owed) -> None:
        name = pb.CommandStatus.Name(owed.status)
        self.stats.answered_by_status[name] = self.stats.answered_by_status.get(name, 0) + 1
        response = answer(owed, self._server_id, self._clock())
        log.warning(
            "✗ Command %s (%s) for agent '%s' → %s: %s",
            response.command_id,
            shown(response.command),
            response.agent_id,
            name,
            owed.message,
        )
        self._responses.publish(response, on_failure=lambda: self.ledger.unwritten(response.command_id))

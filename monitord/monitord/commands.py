"""Command routing: from the ``commands`` topic to the agent's open stream, at once.

Every monitord instance reads every command. The instance holding the agent's stream writes the
command to it immediately; the others hold it. Held commands are delivered when the agent connects
(to whichever instance), and dropped as soon as any instance reports the command DELIVERED or final
on ``command-responses`` (every instance reads that topic too). A command nobody delivered before
its deadline is answered EXPIRED. INVALID and EXPIRED answers are written after a short delay that
differs per instance and per command, and skipped if another instance already answered, so with
several instances a command normally gets exactly one such answer. The agent de-duplicates by
command id, so a command delivered twice (reconnect, two instances) still runs once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from monitord import records
from monitord.command_records import FINAL_STATUSES
from monitord.config import CommandsSection
from monitord.errors import InvalidCommand
from monitord.publishers import ResponsePublisher
from monitord.sessions import Session, SessionRegistry
from monitord.stats import RouterStats
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)

#: Spread of the per-instance delay before answering INVALID/EXPIRED (see module docstring).
ANSWER_SPREAD_SECONDS = 1.0
#: How long answered command ids are remembered (to ignore re-reads and late duplicates).
REMEMBER_SECONDS = 3600.0


@dataclass
class Held:
    """A command waiting for its agent (or for the agent's DELIVERED)."""

    command: pb.CommandMessage
    deadline: float  # wall clock


def parse(
    key: bytes | None, value: bytes | None, headers: records.Headers | None, cfg: CommandsSection, now: float
) -> pb.CommandMessage:
    """Decode and normalise a commands record; :class:`InvalidCommand` says what is wrong."""
    if not value:
        raise InvalidCommand("empty record value")
    try:  # the same decoder as every other reader: protobuf, or proto3 JSON by header or by look
        command = records.decode(key, value, headers, default_type=pb.CommandMessage).message
    except records.RecordDecodeError as exc:
        raise InvalidCommand(f"not a CommandMessage: {str(exc)[:200]}") from None
    if not isinstance(command, pb.CommandMessage):
        raise InvalidCommand(f"a {command.DESCRIPTOR.full_name} record, not a CommandMessage")
    key_agent = key.decode("utf-8", "replace") if key else ""
    if key_agent and command.agent_id and key_agent != command.agent_id:
        raise InvalidCommand(f"record key {key_agent!r} and agent_id {command.agent_id!r} differ")
    command.agent_id = command.agent_id or key_agent
    if not command.command_id:
        command.command_id = uuid.uuid4().hex
    if not command.agent_id:
        raise InvalidCommand("no agent id (record key or agentId)")
    if not command.command:
        raise InvalidCommand("no command name")
    if len(command.args) > cfg.max_args:
        raise InvalidCommand(f"{len(command.args)} arguments (limit {cfg.max_args})")
    if any(len(a.encode()) > cfg.max_arg_bytes for a in command.args):
        raise InvalidCommand(f"an argument is longer than {cfg.max_arg_bytes} bytes")
    if not command.HasField("created_at"):
        command.created_at.FromNanoseconds(int(now * 1e9))
    return command


def deadline_of(command: pb.CommandMessage, cfg: CommandsSection, now: float) -> float:
    """Absolute expiry: expires_at, else created_at + ttl, else now + default TTL; capped."""
    created = command.created_at.ToNanoseconds() / 1e9
    if command.HasField("expires_at"):
        deadline = command.expires_at.ToNanoseconds() / 1e9
    elif command.ttl_seconds:
        deadline = created + command.ttl_seconds
    else:
        deadline = now + cfg.default_ttl_seconds
    deadline = min(deadline, now + cfg.max_ttl_seconds)
    if not command.HasField("expires_at"):
        command.expires_at.FromNanoseconds(int(deadline * 1e9))
    return deadline


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
        self._answered: OrderedDict[str, float] = OrderedDict()  # command id -> when seen answered
        self._tasks: set[asyncio.Task[None]] = set()
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

    # -- input -----------------------------------------------------------------------------------

    def on_record(self, key: bytes | None, value: bytes | None, headers: records.Headers | None) -> None:
        """A record from the commands topic."""
        now = self._clock()
        try:
            command = parse(key, value, headers, self._cfg, now)
        except InvalidCommand as exc:
            log.warning("✗ Invalid command record (key %r): %s", (key or b"")[:64], exc)
            self._answer_invalid(key, value, headers, str(exc))
            return
        if command.command_id in self._answered:
            return
        deadline = deadline_of(command, self._cfg, now)
        if deadline <= now:
            self._answer(command, pb.EXPIRED, "expired before monitord read it")
            return
        queue = self._held.setdefault(command.agent_id, OrderedDict())
        if command.command_id in queue:
            return
        self._make_room(queue)
        held = Held(command, deadline)
        queue[command.command_id] = held
        self._count_held()
        session = self._sessions.get(command.agent_id)
        if session is not None:
            self._push(session, held)
        else:
            log.info(
                "Command %s (%s) for agent '%s' held: agent not connected here",
                command.command_id,
                command.command,
                command.agent_id,
            )

    def on_response(self, response: pb.CommandResponseMessage) -> None:
        """A response seen on command-responses or passing through a stream: stop holding it."""
        if response.status == pb.DELIVERED or response.status in FINAL_STATUSES:
            if response.status in FINAL_STATUSES:
                self._remember(response.command_id)
            queue = self._held.get(response.agent_id)
            if queue is not None and queue.pop(response.command_id, None) is not None:
                if not queue:
                    del self._held[response.agent_id]
                self._count_held()

    def on_connect(self, session: Session) -> None:
        """An agent opened a stream here: deliver what is held for it (again, if sent before)."""
        for held in list(self._held.get(session.agent_id, {}).values()):
            self._push(session, held)

    # -- delivery --------------------------------------------------------------------------------

    def _push(self, session: Session, held: Held) -> None:
        self.stats.pushed += 1
        task = asyncio.get_running_loop().create_task(self._write(session, held.command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, session: Session, command: pb.CommandMessage) -> None:
        try:
            await session.send(pb.ServerMessage(command=command))
            log.info("→ Pushed command %s (%s) to agent '%s'", command.command_id, command.command, session.agent_id)
        except Exception as exc:
            log.info(
                "Could not push command %s to '%s' (%s); held until it reconnects",
                command.command_id,
                session.agent_id,
                exc,
            )

    def _make_room(self, queue: OrderedDict[str, Held]) -> None:
        while len(queue) >= self._cfg.max_pending_per_agent or self.held >= self._cfg.max_pending_total:
            victim_queue = queue if len(queue) >= self._cfg.max_pending_per_agent else self._largest_queue()
            if not victim_queue:
                return
            _, held = victim_queue.popitem(last=False)
            self._count_held()
            self._answer(held.command, pb.EXPIRED, "dropped: too many commands held for agents that are not connected")

    def _largest_queue(self) -> OrderedDict[str, Held]:
        return max(self._held.values(), key=len, default=OrderedDict())

    # -- expiry ----------------------------------------------------------------------------------

    async def run_expiry(self, period: float = 0.5) -> None:
        """Answer EXPIRED for held commands past their deadline (runs until cancelled)."""
        while True:
            await asyncio.sleep(period)
            self.expire_due()

    def expire_due(self) -> None:
        now = self._clock()
        for agent_id in list(self._held):
            queue = self._held[agent_id]
            for command_id in [c for c, h in queue.items() if h.deadline <= now]:
                held = queue.pop(command_id)
                # Sent but never acknowledged as DELIVERED: the agent refuses it after the deadline too.
                self._answer(held.command, pb.EXPIRED, "agent did not connect before the command expired")
            if not queue:
                del self._held[agent_id]
        self._count_held()
        cutoff = now - REMEMBER_SECONDS
        while self._answered and next(iter(self._answered.values())) < cutoff:
            self._answered.popitem(last=False)

    # -- answers from monitord itself ----------------------------------------------------------------

    def _remember(self, command_id: str) -> None:
        self._answered[command_id] = self._clock()

    def _answer_invalid(
        self, key: bytes | None, value: bytes | None, headers: records.Headers | None, why: str
    ) -> None:
        command = pb.CommandMessage(agent_id=(key or b"").decode("utf-8", "replace"))
        try:  # salvage the id if the record is readable at all
            if value and value.lstrip()[:1] == b"{":
                json_format.Parse(value.decode("utf-8"), command, ignore_unknown_fields=True)
            elif value:
                command.ParseFromString(value)
        except (json_format.ParseError, DecodeError, UnicodeDecodeError, ValueError):
            pass
        if not command.command_id:
            return  # nothing to correlate an answer with: logged only
        command.agent_id = command.agent_id or (key or b"").decode("utf-8", "replace")
        self._answer(command, pb.INVALID, why)

    def _answer(self, command: pb.CommandMessage, status: pb.CommandStatus.ValueType, message: str) -> None:
        delay = (zlib.crc32(f"{self._server_id}/{command.command_id}".encode()) % 1000) / 1000 * ANSWER_SPREAD_SECONDS
        asyncio.get_running_loop().call_later(delay, self._answer_now, command, status, message)

    def _answer_now(self, command: pb.CommandMessage, status: pb.CommandStatus.ValueType, message: str) -> None:
        if command.command_id in self._answered:
            return  # another instance (or the agent) already answered
        self._remember(command.command_id)
        name = pb.CommandStatus.Name(status)
        self.stats.answered_by_status[name] = self.stats.answered_by_status.get(name, 0) + 1
        log.warning(
            "✗ Command %s (%s) for agent '%s' → %s: %s",
            command.command_id,
            command.command,
            command.agent_id,
            name,
            message,
        )
        now = self._clock()
        response = pb.CommandResponseMessage(
            command_id=command.command_id,
            agent_id=command.agent_id,
            command=command.command,
            status=status,
            message=message,
            requested_by=command.requested_by,
            reported_by=f"monitord:{self._server_id}",
        )
        response.finished_at.FromNanoseconds(int(now * 1e9))
        self._responses.publish(response)

"""Everything the agent sends upstream, in one queue: control messages, command responses, metrics.

The stream's writer asks :meth:`Outbound.next_message` what to send next -- control messages
(heartbeats) first, then command responses, then spooled metrics -- and sleeps in
:meth:`Outbound.wait` when there is nothing. The queue is the only thing that wakes the writer:
every verb that gives it something new to do (a message queued, a replay, the last ack of a
finishing agent, a request to half-close) sets its private event, and nothing else can.

Metrics and command responses stay here until the server acknowledged them, and are replayed
after a reconnect (:meth:`Outbound.start_stream`) or a retriable negative ack
(:meth:`Outbound.rewind`); control messages are sent once and forgotten. Both survive a restart of
the agent: metrics in the spool, command responses in the command journal (:mod:`journal`), which
the command runner writes before it queues a response here; acks are passed on to it, and the
responses it still holds unacknowledged at start are sent first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Protocol

from monitor_agentd.spool import Spool
from monitoring.v1 import monitoring_pb2 as pb

ResponseKey = tuple[str, int]  # (command id, status)


class ResponseStore(Protocol):
    """Where command responses are kept durably until acknowledged (the command journal)."""

    def unacknowledged(self) -> list[pb.CommandResponseMessage]:
        """Responses not acknowledged yet (left by the previous run), oldest first."""
        ...

    def ack(self, command_id: str, status: int) -> None:
        """The server acknowledged this response: it need not be sent after a restart."""
        ...


class ResponseOutbox:
    """Unacknowledged CommandResponseMessages, in the order they were produced, with a send cursor.

    With a ``store`` it starts with the responses the store still holds unacknowledged, and tells it
    about acks; without one it is memory only.
    """

    def __init__(self, store: ResponseStore | None = None) -> None:
        self._store = store
        self._pending: OrderedDict[ResponseKey, pb.CommandResponseMessage] = OrderedDict()
        self._to_send: deque[ResponseKey] = deque()
        for response in store.unacknowledged() if store is not None else []:
            self.add(response)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, response: pb.CommandResponseMessage) -> None:
        """Keep ``response`` until acknowledged and queue it for sending."""
        key = (response.command_id, response.status)
        self._pending[key] = response
        self._to_send.append(key)

    def next_to_send(self) -> pb.CommandResponseMessage | None:
        """The next response for the current stream, or None if nothing is waiting."""
        while self._to_send:
            response = self._pending.get(self._to_send.popleft())
            if response is not None:
                return response
        return None

    def ack(self, command_id: str, status: int) -> None:
        """The server stored (or permanently refused) this response: forget it."""
        self._pending.pop((command_id, status), None)
        if self._store is not None:
            self._store.ack(command_id, status)

    def discard(self, command_id: str, status: int) -> int:
        """The server refused a response permanently: settle it like an ack, so it is neither resent
        nor kept. Without a ``status`` (a refusal that could not say which) every response to
        ``command_id`` is settled. Returns how many were pending."""
        keys = [
            key for key in self._pending if key[0] == command_id and status in (key[1], pb.COMMAND_STATUS_UNSPECIFIED)
        ]
        for key in keys:
            self.ack(*key)
        return len(keys)

    def rewind(self) -> None:
        """Send every unacknowledged response again, oldest first."""
        self._to_send = deque(self._pending)


class Outbound:
    """The one outbound queue of an agent: what to send next, and what is still unacknowledged."""

    def __init__(self, spool: Spool, responses: ResponseStore | None = None) -> None:
        self.spool = spool
        self.responses = ResponseOutbox(responses)
        self._control: deque[pb.AgentMessage] = deque()
        self._wake = asyncio.Event()
        self._finishing = False
        self._ending_stream = False

    # -- producers -------------------------------------------------------------------------------

    def add_record(self, record: pb.MetricsData) -> None:
        """Spool ``record`` (on disk first) and queue it for sending."""
        self.spool.add(record)
        self._wake.set()

    def add_response(self, response: pb.CommandResponseMessage) -> None:
        """Queue a command response (already journaled); it is resent after reconnects until acknowledged."""
        self.responses.add(response)
        self._wake.set()

    def add_control(self, message: pb.AgentMessage) -> None:
        """Queue a control message (a heartbeat): sent once, ahead of everything else."""
        self._control.append(message)
        self._wake.set()

    def finish(self) -> None:
        """The agent is stopping: once everything is acknowledged the writer says goodbye."""
        self._finishing = True
        self._wake.set()

    @property
    def finishing(self) -> bool:
        """True once :meth:`finish` was called."""
        return self._finishing

    @property
    def unacknowledged(self) -> bool:
        """True while any metrics record or command response waits for the server's ack."""
        return bool(self.spool) or bool(self.responses)

    @property
    def ready_for_goodbye(self) -> bool:
        """Finishing, and nothing left to send or to be acknowledged."""
        return self._finishing and not self._control and not self.unacknowledged

    # -- the writer ------------------------------------------------------------------------------

    def next_message(self) -> pb.AgentMessage | None:
        """What the writer sends next, or None if nothing is waiting."""
        if self._control:
            return self._control.popleft()
        response = self.responses.next_to_send()
        if response is not None:
            return pb.AgentMessage(command_response=response)
        record = self.spool.next_to_send()
        return pb.AgentMessage(metrics_data=record) if record is not None else None

    async def wait(self) -> None:
        """Sleep until something changed (returns at once if it already did since the last call)."""
        await self._wake.wait()
        self._wake.clear()

    @property
    def ending_stream(self) -> bool:
        """True after :meth:`end_stream` until the next :meth:`start_stream`."""
        return self._ending_stream

    def start_stream(self) -> None:
        """A new stream is open: replay everything unacknowledged on it."""
        self._ending_stream = False
        self.rewind()

    def end_stream(self) -> None:
        """The server is going away: the writer half-closes once what is queued now is written;
        what is unacknowledged stays and is replayed on the next stream."""
        self._ending_stream = True
        self._wake.set()

    # -- acknowledgments ------------------------------------------------------------------------

    def ack_metrics(self, first: int, last: int) -> None:
        """The server stored metrics ``first..last``."""
        self.spool.ack(first, last)
        if not self.spool:
            self._wake.set()  # a finishing writer may say goodbye now

    def discard_metrics(self, first: int, last: int) -> None:
        """The server refused metrics ``first..last`` permanently: drop (and count) them."""
        self.spool.discard(first, last)
        if not self.spool:
            self._wake.set()

    def hold(self) -> None:
        """Stop sending metrics until :meth:`rewind` (after a retriable negative ack)."""
        self.spool.hold()

    def ack_response(self, command_id: str, status: int) -> None:
        """The server stored (or permanently refused) a command response."""
        self.responses.ack(command_id, status)
        if not self.responses:
            self._wake.set()

    def discard_responses(self, command_id: str, status: int) -> int:
        """The server refused a command response permanently: drop it (all of ``command_id``'s when
        ``status`` is unspecified); returns how many were dropped."""
        dropped = self.responses.discard(command_id, status)
        if not self.responses:
            self._wake.set()
        return dropped

    def rewind(self) -> None:
        """Send every unacknowledged response and record again, oldest first."""
        self.spool.rewind()
        self.responses.rewind()
        if self.unacknowledged:
            self._wake.set()

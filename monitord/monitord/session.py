"""One agent's session: what it registered, and its live stream's state, changed only through verbs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from monitord.inflight import InflightBudget
from monitoring.v1 import monitoring_pb2 as pb

#: An agent silent for this many heartbeat intervals is stale: its stream is cancelled.
STALE_AFTER_INTERVALS = 3
#: ... but never sooner than this (sub-second test intervals would otherwise trip on a busy host).
STALE_MIN_SECONDS = 5.0
#: Heartbeat interval assumed until the agent says (registration or heartbeat).
DEFAULT_HEARTBEAT_SECONDS = 10.0

Write = Callable[[pb.ServerMessage], Awaitable[None]]


@dataclass(frozen=True)
class Registration:
    """What an agent told us in RegisterAgent."""

    agent_id: str
    hostname: str
    agent_version: str
    capabilities: frozenset[str]
    instance_id: str
    interval_seconds: float
    peer: str
    registered_at: float
    #: The agent's number for this connection (0 = unknown: an older agent).
    connection: int = 0


class Session:
    """One live StreamCommunication call; its state changes only through the verbs below."""

    def __init__(
        self,
        agent_id: str,
        peer: str,
        write: Write,
        task: asyncio.Task[object],
        budget: InflightBudget,
        *,
        connection: int = 0,
        registration: Registration | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.peer = peer
        #: The agent's connection number of this stream (0 = unknown); orders its presence records.
        self.connection = connection
        #: What the agent registered before opening this stream (None: no registration seen).
        self.registration = registration
        #: Wall-clock time the stream opened (the ``at`` of its CONNECTED record).
        self.connected_at = time.time()
        #: This stream's share of the in-flight bound (its parent is the server's total).
        self.budget = budget
        self._write = write
        self._task = task
        self._write_lock = asyncio.Lock()
        self._last_seen = time.monotonic()
        self._metrics_received = 0
        self._heartbeat_interval = DEFAULT_HEARTBEAT_SECONDS
        self._goodbye = False
        self._redirected = False
        self._cancel_reason = ""
        #: Why the server stopped reading the stream (a malformed message); "" if it did not.
        self.refused = ""

    # -- verbs -----------------------------------------------------------------------------------

    def heard_from(self) -> None:
        """A message arrived: the agent is alive."""
        self._last_seen = time.monotonic()

    def received_metrics(self) -> None:
        self._metrics_received += 1

    def said_goodbye(self) -> None:
        """The agent announced a graceful close (heartbeat with state STOPPING)."""
        self._goodbye = True

    def heartbeat_every(self, seconds: float) -> None:
        """The agent's collection interval (heartbeats come this often); staleness is judged by it."""
        if seconds > 0:
            self._heartbeat_interval = seconds

    def cancel(self, why: str) -> None:
        """End the stream from the server side; ``why`` becomes the disconnect reason."""
        self._cancel_reason = why
        self._task.cancel()

    async def send(self, message: pb.ServerMessage) -> None:
        """Write one message on the stream; writes from several tasks are serialised."""
        async with self._write_lock:
            await self._write(message)

    async def redirect(self, control: pb.ServerMessage, timeout: float) -> None:
        """Tell the agent to reconnect elsewhere (shutdown); its stream then ends as a goodbye."""
        self._redirected = True
        await asyncio.wait_for(self.send(control), timeout=timeout)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def metrics_received(self) -> int:
        return self._metrics_received

    @property
    def ended_cleanly(self) -> bool:
        """The agent said goodbye, or the server redirected it."""
        return self._goodbye or self._redirected

    @property
    def redirected(self) -> bool:
        return self._redirected

    @property
    def cancel_reason(self) -> str:
        return self._cancel_reason

    def silent_for(self, now: float) -> float:
        return now - self._last_seen

    def is_stale(self, now: float) -> bool:
        return self.silent_for(now) > max(STALE_AFTER_INTERVALS * self._heartbeat_interval, STALE_MIN_SECONDS)

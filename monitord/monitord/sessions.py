"""Who is connected: registrations and the one live stream per agent id.

A second stream for an agent id that already has one replaces it (the older one is cancelled with
reason "replaced"): an agent that lost its connection without the server noticing must be able to
come back at once, and the newest connection is the one that works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


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


@dataclass(eq=False)
class Session:
    """One live StreamCommunication call."""

    agent_id: str
    peer: str
    write: Callable[[pb.ServerMessage], asyncio.Future[None] | object]
    cancel: Callable[[str], None]
    opened_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    metrics_received: int = 0
    #: The agent announced a graceful close (heartbeat with state STOPPING).
    said_goodbye: bool = False
    #: The server told the agent to reconnect elsewhere (shutdown).
    redirected: bool = False
    #: The agent's collection interval (heartbeats come this often); staleness is judged by it.
    heartbeat_interval: float = 10.0
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: pb.ServerMessage) -> None:
        """Write one message on the stream; writes from several tasks are serialised."""
        async with self.write_lock:
            await self.write(message)  # type: ignore[misc]


class SessionRegistry:
    """Registrations and active sessions, keyed by agent id (event-loop confined, no locks)."""

    def __init__(self) -> None:
        self.registrations: dict[str, Registration] = {}
        self._active: dict[str, Session] = {}
        self.disconnects = 0
        #: Set on shutdown: no new registrations or streams.
        self.draining = False

    def register(self, registration: Registration) -> None:
        self.registrations[registration.agent_id] = registration

    def open(self, session: Session) -> None:
        """Make ``session`` the agent's live stream, cancelling an older one."""
        old = self._active.get(session.agent_id)
        if old is not None:
            log.warning(
                "Agent '%s' opened a new stream from %s; closing its older stream from %s",
                session.agent_id,
                session.peer,
                old.peer,
            )
            old.cancel("replaced by a newer stream")
        self._active[session.agent_id] = session

    def close(self, session: Session) -> bool:
        """Forget ``session``; False if it had already been replaced by a newer one."""
        self.disconnects += 1
        if self._active.get(session.agent_id) is session:
            del self._active[session.agent_id]
            return True
        return False

    def get(self, agent_id: str) -> Session | None:
        return self._active.get(agent_id)

    def is_connected(self, agent_id: str) -> bool:
        return agent_id in self._active

    def __len__(self) -> int:
        return len(self._active)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._active.values()))

"""Who is connected: registrations, the one live stream per agent id, and each stream's lifecycle.

The registry owns every session from open to close: it replaces an older stream of the same
agent, publishes presence (CONNECTED, then DISCONNECTED or STALE with the reason), cancels streams
of agents gone silent, tells every agent to reconnect elsewhere on shutdown, and holds the
in-flight budget all streams share. Other modules talk to a session only through its verbs
(:meth:`Session.heard_from`, :meth:`Session.said_goodbye`, ...).

A second stream for an agent id that already has one replaces it (the older one is cancelled with
reason "replaced"): an agent that lost its connection without the server noticing must be able to
come back at once, and the newest connection is the one that works. Every presence record names
the agent's connection number of its stream (:mod:`monitord.presence_order`), and the replaced
stream's DISCONNECTED is followed by the newer stream's CONNECTED again, so the compacted topic
ends with the state that holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

import grpc

from monitord.errors import MonitordError
from monitord.inflight import InflightBudget
from monitord.publishers import PresencePublisher
from monitord.session import Registration, Session, Write
from monitord.stats import SessionStats
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


class SessionRegistry:
    """Registrations and active sessions, keyed by agent id (event-loop confined, no locks)."""

    def __init__(
        self, presence: PresencePublisher, *, max_inflight_total: int, max_registrations: int = 40_000
    ) -> None:
        self._presence = presence
        #: The latest registration per agent id, oldest first; at most ``max_registrations``.
        self._registrations: dict[str, Registration] = {}
        self._max_registrations = max_registrations
        self._active: dict[str, Session] = {}
        self._none_open = asyncio.Event()
        self._none_open.set()
        self._draining = False
        #: Records of all streams handed to Kafka and not yet acknowledged.
        self.inflight = InflightBudget(max_inflight_total)
        self.stats = SessionStats()

    # -- registrations and admission ---------------------------------------------------------------

    def register(self, registration: Registration) -> None:
        """Remember ``registration`` for the agent's next stream; the oldest are forgotten beyond the bound."""
        self._registrations.pop(registration.agent_id, None)
        self._registrations[registration.agent_id] = registration
        while len(self._registrations) > self._max_registrations:
            del self._registrations[next(iter(self._registrations))]

    def registration(self, agent_id: str) -> Registration | None:
        return self._registrations.get(agent_id)

    def drain(self) -> None:
        """Shutdown: no new registrations or streams from now on."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def get(self, agent_id: str) -> Session | None:
        return self._active.get(agent_id)

    def is_connected(self, agent_id: str) -> bool:
        return agent_id in self._active

    def __len__(self) -> int:
        return len(self._active)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._active.values()))

    # -- a stream's life -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def opened(
        self, agent_id: str, peer: str, write: Write, *, max_inflight: int, connection: int = 0
    ) -> AsyncIterator[Session]:
        """The session of the calling task's stream, from CONNECTED to its disconnect reason.

        ``connection`` is the agent's number for this stream (its call metadata); 0 takes the one
        of the agent's registration. Errors of the stream end it (logged, presence says why);
        cancellation propagates.
        """
        task = asyncio.current_task()
        assert task is not None
        registration = self._registrations.get(agent_id)
        if connection == 0 and registration is not None:
            connection = registration.connection
        session = Session(
            agent_id,
            peer,
            write,
            task,
            self.inflight.child(max_inflight),
            connection=connection,
            registration=registration,
        )
        self._open(session)
        log.info(
            "Agent '%s' connected from %s (connection %d; %d agents connected)", agent_id, peer, connection, len(self)
        )
        if registration is not None:
            session.heartbeat_every(registration.interval_seconds)
        self._publish(session, pb.CONNECTED, "")
        reason = ""
        try:
            yield session
            # A dying peer can look like a half-close; only a STOPPING heartbeat makes it a goodbye.
            if session.refused:
                reason = session.refused
            elif not session.ended_cleanly:
                reason = "stream closed without a goodbye (agent died or connection lost)"
        except asyncio.CancelledError:
            reason = session.cancel_reason or "connection lost"
            raise
        except Exception as exc:
            inner = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
            reason = f"stream error: {type(inner).__name__}: {inner}"
            if not isinstance(inner, (grpc.aio.AioRpcError, ConnectionError, MonitordError)):
                log.error("Unexpected error on the stream of agent '%s'", agent_id, exc_info=inner)
        finally:
            self._close(session, reason)

    def _open(self, session: Session) -> None:
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
        self._none_open.clear()
        self.stats.opened += 1
        self.stats.connected = len(self._active)

    def _close(self, session: Session, reason: str) -> None:
        """Forget ``session`` (unless a newer stream replaced it already), publish and log why it ended."""
        self.stats.closed += 1
        current = self._active.get(session.agent_id)
        if current is session:
            del self._active[session.agent_id]
            current = None
        self.stats.connected = len(self._active)
        if not self._active:
            self._none_open.set()
        agent_id = session.agent_id
        if not reason:
            self._publish(session, pb.DISCONNECTED, "server shutting down" if session.redirected else "goodbye")
        else:
            self._publish(session, pb.STALE if reason.startswith("stale") else pb.DISCONNECTED, reason)
        if current is not None and replaces(current, session):
            # The record just published is about the replaced stream: say again what holds now,
            # so the last record of the agent (all that compaction keeps) is the newer CONNECTED.
            self._publish(current, pb.CONNECTED, "")
        if not reason:
            log.info(
                "✓ Stream ended for agent '%s' (%d metrics received)%s",
                agent_id,
                session.metrics_received,
                "; redirected: server shutting down" if session.redirected else "",
            )
            return
        log.warning(
            "✗ Agent '%s' disconnected: %s (%d metrics received; %d agents connected)",
            agent_id,
            reason,
            session.metrics_received,
            len(self),
        )

    def _publish(self, session: Session, state: pb.AgentPresence.ValueType, reason: str) -> None:
        announce(self._presence, session, state, reason)

    # -- server-wide verbs -----------------------------------------------------------------------

    async def redirect_all(self, deadline: float) -> None:
        """Tell every agent to reconnect elsewhere; wait (until ``deadline``) for their streams to end.

        Each agent half-closes at once, its in-flight records are still acknowledged, and it
        reconnects to another server without waiting for a timeout.
        """
        control = pb.ServerMessage(
            control=pb.ServerControl(action=pb.ServerControl.RECONNECT, reason="server shutting down")
        )
        for session in self:
            try:
                await session.redirect(control, timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                log.debug("Could not redirect agent '%s': %s", session.agent_id, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_open.wait(), timeout=max(0.0, deadline - time.monotonic()))

    def cancel_stale(self, now: float) -> None:
        """Cancel the streams of agents silent for 3 heartbeat intervals (presence: STALE)."""
        for session in self:
            if session.is_stale(now):
                silent = session.silent_for(now)
                log.warning("Agent '%s' silent for %.0fs: marking stale", session.agent_id, silent)
                session.cancel(f"stale: silent for {silent:.0f}s")

    async def watch_stale(self, period: float = 1.0) -> None:
        """:meth:`cancel_stale` every ``period`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(period)
            self.cancel_stale(time.monotonic())


def announce(presence: PresencePublisher, session: Session, state: pb.AgentPresence.ValueType, reason: str) -> None:
    """Publish ``state`` of ``session``'s stream: its connection number, peer and registration.

    A CONNECTED record is dated when the stream opened, also when it is published again later.
    """
    registration = session.registration
    presence.publish(
        session.agent_id,
        state,
        reason=reason,
        peer=session.peer,
        hostname=registration.hostname if registration is not None else "",
        agent_version=registration.agent_version if registration is not None else "",
        instance_id=registration.instance_id if registration is not None else "",
        connection=session.connection,
        at=session.connected_at if state == pb.CONNECTED else None,
    )


def replaces(newer: Session, older: Session) -> bool:
    """Whether ``newer`` (opened after ``older``, same agent) is the agent's present stream.

    By open order -- unless both carry connection numbers, which then decide.
    """
    if newer.connection == 0 or older.connection == 0:
        return True
    return newer.connection > older.connection

"""The monitord lifecycle object: start Kafka and gRPC, serve until told to stop, shut down in order."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from monitord import __version__, records
from monitord.command_intake import CommandIntake
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.errors import MonitordError
from monitord.kafka_bridge import KafkaProducerBridge, ProducerFactory
from monitord.presence import PresencePublisher
from monitord.service import MonitoringService
from monitord.sessions import SessionRegistry
from monitord.stats import ServerStats
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: HTTP/2 keepalive, agreed with the agent's settings (monitor_agentd.channel): the server pings an
#: idle agent every 30 s and drops it when no answer comes within 10 s; it tolerates agent pings
#: down to every 10 s, and the agent pings every 20 s, so it never answers too_many_pings.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
]


#: An agent silent for this many heartbeat intervals is stale: its stream is cancelled.
STALE_AFTER_INTERVALS = 3
#: ... but never sooner than this (sub-second test intervals would otherwise trip on a busy host).
STALE_MIN_SECONDS = 5.0


class StartupError(MonitordError):
    """monitord could not start (e.g. the listen address is in use)."""


class Monitord:
    """One server process: ``async with Monitord(cfg) as m: await m.serve(stop_event)``."""

    def __init__(self, cfg: MonitordConfig, *, producer_factory: ProducerFactory | None = None) -> None:
        self.cfg = cfg
        self.stats = ServerStats()
        self.sessions = SessionRegistry()
        self.bridge = KafkaProducerBridge(
            cfg.kafka, client_id=f"monitord-{cfg.server.effective_server_id}", producer_factory=producer_factory
        )
        server_id = cfg.server.effective_server_id
        self.presence = PresencePublisher(self.bridge, cfg.kafka, server_id)
        self.router = CommandRouter(cfg.commands, self.sessions, self._emit_response, server_id)
        self.intake = CommandIntake(cfg, self.router)
        self._tasks: list[asyncio.Task[None]] = []
        self._server: grpc.aio.Server | None = None
        self._shutdown_done = False
        self.port = 0

    async def __aenter__(self) -> Monitord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Create the producer, bind and start the gRPC server."""
        await self.bridge.start()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.cfg.server.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *KEEPALIVE_OPTIONS,
            ]
        )
        pb_grpc.add_MonitoringServiceServicer_to_server(
            MonitoringService(self.cfg, self.bridge, self.sessions, self.stats, self.presence, self.router), server
        )
        try:
            self.port = server.add_insecure_port(self.cfg.server.listen)
        except RuntimeError as exc:
            raise StartupError(f"cannot listen on {self.cfg.server.listen}: {exc}") from None
        if self.port == 0:
            raise StartupError(f"cannot listen on {self.cfg.server.listen} (address in use or not available)")
        await server.start()
        self._server = server
        log.info(
            "monitord %s (server id %s) listening on %s",
            __version__,
            self.cfg.server.effective_server_id,
            self.cfg.server.listen,
        )
        log.info("Mode: Bidirectional streaming (no polling)")
        log.info(
            "Kafka: %s (topic %s, %s encoding)",
            self.cfg.kafka.bootstrap_servers,
            self.cfg.kafka.topics.metrics,
            self.cfg.kafka.value_encoding,
        )
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch_stale(), name="stale-watch"))
        if self.cfg.commands.enabled:
            self.intake.start()
            self._tasks.append(asyncio.get_running_loop().create_task(self.router.run_expiry(), name="command-expiry"))
            log.info(
                "Commands: consuming %s (group %s.%s)",
                self.cfg.kafka.topics.commands,
                self.cfg.commands.consumer_group_prefix,
                self.cfg.server.effective_server_id,
            )

    def _emit_response(self, response: pb.CommandResponseMessage) -> None:
        key, value, headers = records.encode(
            response,
            agent_id=response.agent_id,
            server_id=self.cfg.server.effective_server_id,
            encoding=self.cfg.kafka.value_encoding,
        )
        self.bridge.publish_soon(
            self.cfg.kafka.topics.command_responses, key, value, headers, f"response to command {response.command_id}"
        )

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, logging a status line every minute."""
        last = (time.monotonic(), self.stats.forwarded)
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=60)
                return
            except TimeoutError:
                now, forwarded = time.monotonic(), self.stats.forwarded
                rate = (forwarded - last[1]) / (now - last[0])
                last = (now, forwarded)
                log.info("%s", self.status_line(rate))

    def status_line(self, rate: float) -> str:
        """One-line summary for operators (logs now; STATUS= later)."""
        kafka = "up" if self.bridge.kafka_up else f"DOWN ({self.bridge.kafka_state})"
        return (
            f"{len(self.sessions)} agents connected, {rate:.1f} records/s, "
            f"{self.stats.forwarded} forwarded, {self.stats.failed} failed, Kafka {kafka}"
        )

    async def _redirect_agents(self, deadline: float) -> None:
        """Tell every agent to reconnect elsewhere; wait (bounded) until their streams wound down.

        Each agent half-closes at once, its in-flight records are still acknowledged, and it
        reconnects to another server without waiting for a timeout.
        """
        control = pb.ServerMessage(
            control=pb.ServerControl(action=pb.ServerControl.RECONNECT, reason="server shutting down")
        )
        for session in self.sessions:
            session.redirected = True
            try:
                await asyncio.wait_for(session.send(control), timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                log.debug("Could not redirect agent '%s': %s", session.agent_id, exc)
        while len(self.sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _watch_stale(self, period: float = 1.0) -> None:
        """Cancel streams of agents silent for 3 heartbeat intervals (presence: STALE)."""
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in self.sessions:
                silent = now - session.last_seen
                if silent > max(STALE_AFTER_INTERVALS * session.heartbeat_interval, STALE_MIN_SECONDS):
                    log.warning("Agent '%s' silent for %.0fs: marking stale", session.agent_id, silent)
                    session.cancel(f"stale: silent for {silent:.0f}s")

    async def shutdown(self) -> None:
        """Stop accepting, give streams the grace period, then flush and close the producer (idempotent)."""
        if self._shutdown_done:
            return
        self._shutdown_done = True
        grace = self.cfg.server.shutdown_grace_seconds
        deadline = time.monotonic() + grace
        self.sessions.draining = True  # new registrations and streams get UNAVAILABLE
        if self._server is not None:
            log.info("Shutting down: %d agents connected, grace %.0fs", len(self.sessions), grace)
            await self._redirect_agents(deadline)
            await self._server.stop(max(0.0, deadline - time.monotonic()))
        for task in self._tasks:
            task.cancel()
        await self.intake.close()
        await self.bridge.drain(timeout=grace)
        left = await self.bridge.close(timeout=grace)
        log.info(
            "monitord stopped (%d forwarded, %d failed, %d left undelivered)",
            self.stats.forwarded,
            self.stats.failed,
            left,
        )

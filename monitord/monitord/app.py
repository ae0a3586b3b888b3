"""The monitord lifecycle object: start Kafka and gRPC, serve until told to stop, shut down in order."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Callable

import grpc

from monitord import __version__, metrics, records
from monitord.auth import AuthConfigError, Authenticator, load_tokens, server_credentials
from monitord.command_intake import CommandIntake
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.errors import MonitordError
from monitord.health import HealthReporter
from monitord.kafka_bridge import KafkaProducerBridge, ProducerFactory
from monitord.presence import PresencePublisher
from monitord.service import MonitoringService
from monitord.sessions import SessionRegistry
from monitord.stats import ServerStats
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_common import logsetup
from monitoring_common.metrics_http import MetricsEndpoint
from monitoring_common.notify import Notifier, reload_config, supervise

log = logging.getLogger(__name__)

#: HTTP/2 keepalive, agreed with the agent's (monitor_agentd.stream.channel_options): the server pings an
#: idle agent every 30 s and drops it when no answer comes within 10 s; it tolerates agent pings
#: down to every 10 s, and the agent pings every 20 s, so it never answers too_many_pings.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
]


COMPRESSION = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip}

Reloader = Callable[[], MonitordConfig]

#: An agent silent for this many heartbeat intervals is stale: its stream is cancelled.
STALE_AFTER_INTERVALS = 3
#: ... but never sooner than this (sub-second test intervals would otherwise trip on a busy host).
STALE_MIN_SECONDS = 5.0


class StartupError(MonitordError):
    """monitord could not start (e.g. the listen address is in use)."""


class Monitord:
    """One server process: ``async with Monitord(cfg) as m: await m.serve(stop_event)``."""

    def __init__(
        self, cfg: MonitordConfig, *, producer_factory: ProducerFactory | None = None, notifier: Notifier | None = None
    ) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self._rate_sample = (time.monotonic(), 0)
        self._rate = 0.0
        self.stats = ServerStats()
        self.sessions = SessionRegistry()
        self.bridge = KafkaProducerBridge(
            cfg.kafka,
            client_id=f"monitord-{cfg.server.effective_server_id}",
            producer_factory=producer_factory,
            on_state_change=self._kafka_state_changed,
        )
        self.health = HealthReporter()
        self.metrics: MetricsEndpoint | None = None
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
        """Create the producer, bind and start the gRPC server; READY=1 once serving."""
        self.notifier.extend_timeout(30)
        await self.bridge.start()
        server = grpc.aio.server(
            compression=COMPRESSION[self.cfg.server.compression],
            options=[
                ("grpc.max_receive_message_length", self.cfg.server.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *KEEPALIVE_OPTIONS,
            ],
        )
        try:
            credentials = server_credentials(self.cfg.server)
            self.auth = Authenticator(self.cfg.server, load_tokens(self.cfg.server.auth.tokens_file))
        except AuthConfigError as exc:
            raise StartupError(str(exc)) from None
        self.service = MonitoringService(
            self.cfg, self.bridge, self.sessions, self.stats, self.presence, self.router, self.auth
        )
        pb_grpc.add_MonitoringServiceServicer_to_server(self.service, server)
        self.health.attach(server)
        try:
            if credentials is None:
                log.warning("TLS is off (server.tls.mode: plaintext): agent traffic and identities are not protected")
                self.port = server.add_insecure_port(self.cfg.server.listen)
            else:
                self.port = server.add_secure_port(self.cfg.server.listen, credentials)
            if not self.cfg.server.auth.require_identity:
                log.warning("server.auth.require_identity is false: any client may connect as any agent")
        except RuntimeError as exc:
            raise StartupError(f"cannot listen on {self.cfg.server.listen}: {exc}") from None
        if self.port == 0:
            raise StartupError(f"cannot listen on {self.cfg.server.listen} (address in use or not available)")
        if self.cfg.metrics.listen:
            self.metrics = metrics.endpoint(self)
            try:
                self.metrics.start()
            except OSError as exc:
                raise StartupError(str(exc)) from None
        await server.start()
        self._server = server
        await self.health.set_serving(self.bridge.kafka_up)
        # What start-up created (modules, descriptors, config) lives for the whole run: keep it out
        # of every collection. Per-record objects are freed by reference counting, so young-object
        # collections can be rarer (measured with bench/ingest.py: about 5-10 % less CPU per record).
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
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

        self.notifier.ready(self.status_line())

    def _kafka_state_changed(self, up: bool, _detail: str) -> None:
        # Load balancers send agents elsewhere while this instance cannot store their records.
        task = asyncio.get_running_loop().create_task(self.health.set_serving(up))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    def inflight(self) -> int:
        return self.service.inflight() if self._server is not None else 0

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

    async def serve(
        self, stop: asyncio.Event, reload: asyncio.Event | None = None, reloader: Reloader | None = None
    ) -> None:
        """Run until ``stop`` is set: STATUS=/watchdog, a status log line a minute, SIGHUP reloads."""
        reload = reload or asyncio.Event()
        supervisor = asyncio.create_task(supervise(self.notifier, self.healthy, self.status_line), name="supervise")
        next_log = time.monotonic() + 60
        try:
            while not stop.is_set():
                waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(reload.wait())]
                await asyncio.wait(
                    waiters, timeout=max(0.0, next_log - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
                if reload.is_set() and not stop.is_set():
                    reload.clear()
                    if reloader is not None:
                        self.reload(reloader)
                if time.monotonic() >= next_log:
                    log.info("%s", self.status_line())
                    next_log = time.monotonic() + 60
        finally:
            supervisor.cancel()

    def healthy(self) -> bool:
        """What the watchdog ping depends on (a wedged event loop stops it anyway)."""
        return self.bridge.delivery_path_alive()

    def status_line(self) -> str:
        """One line for operators: the STATUS= of `systemctl status`, and the periodic log line."""
        now, forwarded = time.monotonic(), self.stats.forwarded
        then, before = self._rate_sample
        rate = (forwarded - before) / (now - then) if now - then >= 1 else self._rate
        if now - then >= 1:
            self._rate_sample, self._rate = (now, forwarded), rate
        kafka = "up" if self.bridge.kafka_up else f"DOWN ({self.bridge.kafka_state})"
        return (
            f"{len(self.sessions)} agents connected, {rate:.1f} records/s, "
            f"{self.stats.forwarded} forwarded, {self.stats.failed} failed, Kafka {kafka}"
        )

    def reload(self, reloader: Reloader) -> None:
        """SIGHUP: validate the new file; apply what can change live; keep the old one if invalid."""
        reload_config(self.notifier, reloader, self.apply, self.status_line)

    def apply(self, new: MonitordConfig) -> None:
        """Take ``new`` over, except what only a restart can change (listen address, Kafka)."""
        old = self.cfg
        fixed = {
            "server.listen": (old.server.listen, new.server.listen),
            "server.server_id": (old.server.server_id, new.server.server_id),
            "server.tls": (old.server.tls, new.server.tls),
            "kafka": (old.kafka, new.kafka),
            "commands.enabled": (old.commands.enabled, new.commands.enabled),
            "commands.consumer_group_prefix": (old.commands.consumer_group_prefix, new.commands.consumer_group_prefix),
            "commands.fetch_wait_max_ms": (old.commands.fetch_wait_max_ms, new.commands.fetch_wait_max_ms),
        }
        for key, (was, now) in fixed.items():
            if was != now:
                log.warning("Reload: %s changed; that takes effect only after a restart", key)
        effective = dataclasses.replace(
            new,
            server=dataclasses.replace(
                new.server, listen=old.server.listen, server_id=old.server.server_id, tls=old.server.tls
            ),
            kafka=old.kafka,
            commands=dataclasses.replace(
                new.commands,
                enabled=old.commands.enabled,
                consumer_group_prefix=old.commands.consumer_group_prefix,
                fetch_wait_max_ms=old.commands.fetch_wait_max_ms,
            ),
        )
        try:
            tokens = load_tokens(effective.server.auth.tokens_file)
        except AuthConfigError as exc:
            log.error("Reload rejected, the running configuration stays in force: %s", exc)
            return
        logsetup.set_level(effective.logging.level)
        self.cfg = effective
        self.auth.reconfigure(effective.server, tokens)  # a changed tokens file applies to new calls
        self.service.reconfigure(effective)
        self.router.reconfigure(effective.commands)
        log.info("✓ Configuration reloaded (log level %s)", effective.logging.level)

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
        self.notifier.stopping(f"shutting down: {len(self.sessions)} agents connected")
        self.notifier.extend_timeout(grace + 15)
        deadline = time.monotonic() + grace
        self.sessions.draining = True  # new registrations and streams get UNAVAILABLE
        await self.health.shutting_down()  # NOT_SERVING from now on
        if self._server is not None:
            log.info("Shutting down: %d agents connected, grace %.0fs", len(self.sessions), grace)
            await self._redirect_agents(deadline)
            await self._server.stop(max(0.0, deadline - time.monotonic()))
        for task in self._tasks:
            task.cancel()
        await self.intake.close()
        await self.bridge.drain(timeout=grace)
        left = await self.bridge.close(timeout=grace)
        if self.metrics is not None:
            self.metrics.close()
        log.info(
            "monitord stopped (%d forwarded, %d failed, %d left undelivered)",
            self.stats.forwarded,
            self.stats.failed,
            left,
        )

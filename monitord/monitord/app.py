"""The monitord lifecycle object: start Kafka and gRPC, serve until told to stop, shut down in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

import grpc

from monitord import __version__, metrics
from monitord.auth import Authenticator, load_tokens, server_credentials
from monitord.command_intake import CommandIntake
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.errors import AuthConfigError, StartupError
from monitord.health import HealthReporter
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.kafka_clients import CommandsConsumerFactory, ProducerFactory
from monitord.kafka_cluster import AdminFactory
from monitord.kafka_state import KafkaStatus
from monitord.limits import connection_options
from monitord.presence_guard import PresenceGuard
from monitord.publishers import PresencePublisher, ResponsePublisher
from monitord.reload import effective_config
from monitord.service import MonitoringService, add_to_server
from monitord.sessions import SessionRegistry
from monitord.stats import RateMeter, ServerStats
from monitoring_common import logsetup
from monitoring_common.metrics_http import MetricsEndpoint
from monitoring_common.notify import Notifier, reload_config, supervise
from monitoring_common.transport import COMPRESSION, SERVER_KEEPALIVE_OPTIONS

log = logging.getLogger(__name__)

Reloader = Callable[[], MonitordConfig]


class Monitord:
    """One server process: ``async with Monitord(cfg) as m: await m.serve(stop_event)``."""

    def __init__(
        self,
        cfg: MonitordConfig,
        *,
        producer_factory: ProducerFactory | None = None,
        consumer_factory: CommandsConsumerFactory | None = None,
        notifier: Notifier | None = None,
        admin_factory: AdminFactory | None = None,
    ) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self._rate = RateMeter()
        server_id = cfg.server.effective_server_id
        self.stats = ServerStats()
        self.bridge = KafkaProducerBridge(
            cfg.kafka,
            client_id=f"monitord-{server_id}",
            producer_factory=producer_factory,
            admin_factory=admin_factory,
            on_state_change=self._kafka_state_changed,
        )
        self.health = HealthReporter()
        self.presence = PresencePublisher(self.bridge, cfg.kafka, server_id)
        self.sessions = SessionRegistry(
            self.presence,
            max_inflight_total=cfg.server.max_inflight_total,
            max_registrations=2 * cfg.server.limits.max_agents,
        )
        self.router = CommandRouter(
            cfg.commands, self.sessions, ResponsePublisher(self.bridge, cfg.kafka, server_id), server_id
        )
        guard = PresenceGuard(self.sessions, self.presence)  # a late DISCONNECTED elsewhere never wins
        self.intake = CommandIntake(cfg, self.router, consumer_factory, on_presence=guard.on_status)
        # The tokens file is read in start(): until then no call is served.
        self.auth = Authenticator(cfg.server, {}, self.stats.auth)
        self.service = MonitoringService(cfg, self.bridge, self.sessions, self.stats, self.router, self.auth)
        self.metrics: MetricsEndpoint | None = None
        self._server: grpc.aio.Server | None = None
        self._serving = False
        self._intake_started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._shutdown_done = False
        self.port = 0

    async def __aenter__(self) -> Monitord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- start -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the producer, bind and start the gRPC server; READY=1 once serving (a failure undoes it all)."""
        self.notifier.extend_timeout(30)
        try:
            await self.bridge.start()
            # /metrics before the gRPC port: a grpc.aio server that was bound but never started
            # keeps its port until the process exits, so binding is the last step that can fail.
            self._start_metrics()
            server = self._build_server()
            await self._serve(server)
            await self._start_background()
        except BaseException:
            await self._stop_partial_start()
            raise
        self.notifier.ready(self.status_line())

    def _build_server(self) -> grpc.aio.Server:
        """The gRPC server with every service attached, bound to ``server.listen``."""
        try:
            credentials = server_credentials(self.cfg.server)
            self.auth.reconfigure(self.cfg.server, load_tokens(self.cfg.server.auth.tokens_file))
        except AuthConfigError as exc:
            raise StartupError(str(exc)) from None
        server = grpc.aio.server(
            compression=COMPRESSION[self.cfg.server.compression],
            options=[
                ("grpc.max_receive_message_length", self.cfg.server.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *SERVER_KEEPALIVE_OPTIONS,
                *connection_options(self.cfg.server.limits),
            ],
        )
        self._server = server
        add_to_server(self.service, server)
        self.health.attach(server, self.auth)
        self._bind(server, credentials)
        return server

    def _bind(self, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None) -> None:
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

    def _start_metrics(self) -> None:
        if not self.cfg.metrics.listen:
            return
        sources = metrics.Sources(
            server=self.stats,
            sessions=self.sessions.stats,
            router=self.router.stats,
            intake=self.intake.stats,
            inflight=self.sessions.inflight,
            kafka=self.bridge,
        )
        self.metrics = metrics.endpoint(self.cfg.metrics.listen, sources)
        try:
            self.metrics.start()
        except OSError as exc:
            raise StartupError(str(exc)) from None

    async def _serve(self, server: grpc.aio.Server) -> None:
        await server.start()
        self._serving = True
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

    async def _start_background(self) -> None:
        """The stale watch and, if enabled, the commands consumer and the command expiry."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.sessions.watch_stale(), name="stale-watch"))
        if not self.cfg.commands.enabled:
            return
        self.intake.start()
        self._intake_started = True
        await self.intake.wait_ready()  # READY=1 promises instant delivery: after the replay (bounded)

    async def _stop_partial_start(self) -> None:
        """Undo a failed start: stop whatever was started, in reverse order (shutdown is then a no-op)."""
        self._shutdown_done = True
        for task in self._tasks:
            task.cancel()
        if self._intake_started:
            await self.intake.close()
        if self._server is not None:
            await self._server.stop(None)
        if self.metrics is not None:
            self.metrics.close()
        await self.bridge.close(timeout=1.0)

    def _kafka_state_changed(self, status: KafkaStatus) -> None:
        # Balancers send agents elsewhere while this instance cannot store records (degraded can).
        task = asyncio.get_running_loop().create_task(self.health.set_serving(status.up))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

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
        return (
            f"{len(self.sessions)} agents connected, {self._rate.rate(self.stats.forwarded):.1f} records/s, "
            f"{self.stats.forwarded} forwarded, {self.stats.failed} failed, Kafka {self.bridge.kafka_status().text}"
        )

    def reload(self, reloader: Reloader) -> None:
        """SIGHUP: validate the new file; apply what can change live; keep the old one if invalid."""
        reload_config(self.notifier, reloader, self.apply, self.status_line)

    def apply(self, new: MonitordConfig) -> None:
        """Take ``new`` over, except what only a restart can change (listen address, Kafka)."""
        effective = effective_config(self.cfg, new)
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

    async def shutdown(self) -> None:
        """Stop accepting, give streams the grace period, then flush and close the producer (idempotent)."""
        if self._shutdown_done:
            return
        self._shutdown_done = True
        grace = self.cfg.server.shutdown_grace_seconds
        self.notifier.stopping(f"shutting down: {len(self.sessions)} agents connected")
        self.notifier.extend_timeout(grace + 15)
        deadline = time.monotonic() + grace
        self.sessions.drain()  # new registrations and streams get UNAVAILABLE
        await self.health.shutting_down()  # NOT_SERVING from now on
        if self._serving and self._server is not None:
            log.info("Shutting down: %d agents connected, grace %.0fs", len(self.sessions), grace)
            await self.sessions.redirect_all(deadline)
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

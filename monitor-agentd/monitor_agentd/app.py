"""The monitor-agentd lifecycle object: compose the parts, run them, finish cleanly.

Collection (:mod:`schedule`) and connection (:mod:`connection`) are independent tasks: the agent
keeps collecting into its outbound queue while disconnected, and the link replays it after every
reconnect. :class:`Agent` only wires the parts together, runs them, applies reloads and releases
everything at the end::

    async with Agent(cfg) as agent:
        agent.start_metrics()
        status = await agent.run(stop, reload, reloader)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from monitor_agentd import __version__, credentials, metrics
from monitor_agentd.builtins import Builtins
from monitor_agentd.collectors import Collector, make_collector
from monitor_agentd.commands import CommandRunner
from monitor_agentd.config import AgentConfig
from monitor_agentd.connection import Connector
from monitor_agentd.journal import CommandJournal
from monitor_agentd.outbound import Outbound
from monitor_agentd.presence import Presence
from monitor_agentd.schedule import Schedule
from monitor_agentd.spool import Spool
from monitor_agentd.spool_store import SpoolStore
from monitor_agentd.state import StateDir
from monitor_agentd.stream import Link
from monitoring_common import logsetup
from monitoring_common.exits import EX_OK, EX_TEMPFAIL
from monitoring_common.metrics_http import MetricsEndpoint
from monitoring_common.notify import Notifier, reload_config, supervise

log = logging.getLogger(__name__)

Reloader = Callable[[], AgentConfig]
#: On SIGTERM/SIGINT: how long to wait for outstanding acks before exiting anyway.
STOP_GRACE_SECONDS = 5.0
#: The command journal, in the state directory (it replaced ``commands-seen``, read once at start).
JOURNAL_FILE = "command-journal"


class Agent:
    """One agent process: ``await Agent(cfg).run(stop_event)`` returns the exit status.

    Construction takes the state directory's lock and opens the spool; :meth:`run` releases
    everything when it ends, and so does :meth:`shutdown` (idempotent) or leaving ``async with``.
    """

    def __init__(
        self, cfg: AgentConfig, *, collector: Collector | None = None, stop_grace: float = STOP_GRACE_SECONDS
    ) -> None:
        self.cfg = cfg
        self._stop_grace = stop_grace
        self.agent_id = cfg.agent.effective_id
        self.collector = collector or make_collector(cfg.collection, self.agent_id)
        # Unreadable certificates or tokens are a configuration problem: refuse to start (exit 78).
        credentials.load(cfg.connection.tls)
        if cfg.connection.tls.mode == "plaintext":
            log.warning("TLS is off (connection.tls.mode: plaintext): metrics and commands travel unencrypted")
        # The state directory is locked for the life of the process (one agent per directory).
        self.state = StateDir(cfg.agent.state_dir)
        self.state.acquire()
        self._closed = False
        try:
            sp = cfg.spool
            store = SpoolStore(self.state.spool(), segment_records=sp.segment_records, fsync=sp.fsync)
            self.spool = Spool(sp.max_records, store, memory_records=sp.memory_records)
            # The sequence survives restarts: it continues after the last one ever spooled.
            sequence = self.spool.load()
            # What commands were accepted, answered and acknowledged survives restarts too.
            self.journal = CommandJournal(self.state.path / JOURNAL_FILE, directory=self.state.dir)
            self.journal.load(legacy=self.state.seen_commands)
        except BaseException:
            self.state.release()
            raise
        hostname = socket.gethostname()
        self.notifier = Notifier()
        self.outbound = Outbound(self.spool, self.journal)
        connected = asyncio.Event()
        self.schedule = Schedule(
            self.agent_id,
            hostname,
            self.collector,
            self.outbound,
            connected,
            interval=cfg.collection.interval_seconds,
            sequence=sequence,
            labels=cfg.agent.labels,
        )
        self.commands = CommandRunner(
            cfg.commands,
            self.agent_id,
            Builtins(self.schedule, self.info),
            self.outbound,
            self.journal,
        )
        self.commands.finish_interrupted()
        self.presence = Presence(
            self.agent_id,
            self.schedule,
            self.spool,
            self.commands,
            labels=cfg.agent.labels,
            hostname=hostname,
            connections=self.state.connections(),
        )
        self.link = Link(
            cfg.connection, self.agent_id, self.outbound, self.commands, self.presence, connected=connected
        )
        self.connector = Connector(self.link, cfg.agent.servers, cfg.connection, self.spool)
        stats = metrics.AgentStats(self.schedule, self.spool, self.connector, self.commands)
        self.metrics: MetricsEndpoint | None = (
            metrics.endpoint(cfg.metrics.listen, stats) if cfg.metrics.listen else None
        )

    @property
    def sequence(self) -> int:
        """Sequence number of the newest record."""
        return self.schedule.sequence

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    def start_metrics(self) -> None:
        """Serve /metrics if configured; OSError (naming the address) if it cannot listen."""
        if self.metrics is not None:
            self.metrics.start()

    async def run(
        self, stop: asyncio.Event, reload: asyncio.Event | None = None, reloader: Reloader | None = None
    ) -> int:
        """Run until the iterations are done and acknowledged, or ``stop`` is set; then shut down."""
        log.info(
            "monitor-agentd %s starting: agent id '%s', %s mode, every %gs, servers %s",
            __version__,
            self.agent_id,
            self.collector.name,
            self.cfg.collection.interval_seconds,
            ", ".join(self.cfg.agent.servers),
        )
        helpers = [
            asyncio.create_task(self.presence.send_heartbeats(self.link.connected, self.outbound), name="heartbeat"),
            asyncio.create_task(supervise(self.notifier, self.healthy, self.status_line), name="supervise"),
            asyncio.create_task(self._reload_loop(reload or asyncio.Event(), reloader), name="reload"),
        ]
        collector = asyncio.create_task(self.schedule.run(self.cfg.collection.iterations), name="collect")
        connector = asyncio.create_task(self.connector.run(), name="connect")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        self.notifier.ready(self.status_line())
        try:
            await asyncio.wait({collector, connector, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if connector.done():  # only on a bug: it returns after finishing
                connector.result()
                return EX_OK
            by_signal = stop.is_set()
            if collector.done() and not by_signal:
                collector.result()  # re-raise a collector failure
            collector.cancel()
            self.outbound.finish()  # the writer closes the stream once all is acked
            self.notifier.stopping(self.status_line())
            grace = self._stop_grace if by_signal else self.cfg.connection.ack_timeout_seconds
            # Wait for the graceful close (last acks, goodbye); a signal arriving now cuts it short.
            waiting = {connector} if by_signal else {connector, stopper}
            await asyncio.wait(waiting, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            if connector.done():
                connector.result()
                return EX_OK
            if by_signal or stop.is_set():
                log.info("Stopping with %d metrics unacknowledged; they stay spooled on disk", len(self.spool))
                return EX_OK
            log.error("✗ Stopping with %d metrics unacknowledged after waiting %.0fs", len(self.spool), grace)
            return EX_TEMPFAIL
        finally:
            tasks = [collector, connector, stopper, *helpers]
            await self.commands.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel running commands, close the spool and journal, release the state lock, stop /metrics.

        Idempotent; everything unacknowledged is already on disk and is replayed at the next start.
        """
        if self._closed:
            return
        self._closed = True
        await self.commands.close()
        self.spool.close()
        self.journal.close()
        self.state.release()
        if self.metrics is not None:
            self.metrics.close()

    def healthy(self) -> bool:
        """Watchdog condition: collection keeps happening (a wedged loop stops the pings anyway)."""
        return self.outbound.finishing or self.schedule.healthy()

    def status_line(self) -> str:
        """STATUS= for `systemctl status`: connection, spool depth, last ack."""
        dropped = f", {self.spool.dropped} dropped" if self.spool.dropped else ""
        return (
            f"{self.connector.describe()}; spool {len(self.spool)} unacked{dropped}; last ack #{self.spool.last_acked}"
        )

    # -- reload ----------------------------------------------------------------------------------

    async def _reload_loop(self, reload: asyncio.Event, reloader: Reloader | None) -> None:
        while True:
            await reload.wait()
            reload.clear()
            if reloader is None:
                continue
            reload_config(self.notifier, reloader, self.apply, self.status_line)

    def apply(self, new: AgentConfig) -> None:
        """Take ``new`` over live, except what only a restart can change (identity, state, mode)."""
        old = self.cfg
        fixed = {
            "agent.id": (old.agent.id, new.agent.id),
            "agent.state_dir": (old.agent.state_dir, new.agent.state_dir),
            "collection.mode": (old.collection.mode, new.collection.mode),
            "collection.iterations": (old.collection.iterations, new.collection.iterations),
            "spool (except max_records)": (
                dataclasses.replace(old.spool, max_records=0),
                dataclasses.replace(new.spool, max_records=0),
            ),
        }
        for key, (was, now) in fixed.items():
            if was != now:
                log.warning("Reload: %s changed; that takes effect only after a restart", key)
        effective = dataclasses.replace(
            new,
            agent=dataclasses.replace(new.agent, id=old.agent.id, state_dir=old.agent.state_dir),
            collection=dataclasses.replace(
                new.collection, mode=old.collection.mode, iterations=old.collection.iterations
            ),
            spool=dataclasses.replace(old.spool, max_records=new.spool.max_records),
        )
        logsetup.set_level(effective.logging.level)
        if effective.collection.interval_seconds != old.collection.interval_seconds:
            self.schedule.set_interval(effective.collection.interval_seconds)
        self.schedule.labels = self.presence.labels = effective.agent.labels
        self.connector.reconfigure(effective.agent.servers, effective.connection)
        self.spool.max_records = effective.spool.max_records
        self.commands.reconfigure(effective.commands)
        self.cfg = effective
        log.info(
            "✓ Configuration reloaded (interval %gs, %d commands allowed)",
            self.schedule.interval,
            len(effective.commands.definitions),
        )

    # -- the ``info`` built-in -------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The ``info`` command's answer."""
        return {
            "agent_id": self.agent_id,
            "version": __version__,
            "config_hash": config_hash(self.cfg),
            "uptime_seconds": round(time.time() - self.presence.started_at, 3),
            "interval_seconds": self.schedule.interval,
            "mode": self.collector.name,
            "last_sequence": self.schedule.sequence,
            "spool": {"depth": len(self.spool), "dropped": self.spool.dropped, "last_acked": self.spool.last_acked},
            "commands": {"running": self.commands.running, "allowed": sorted(self.cfg.commands.definitions)},
            "server": self.link.server_id,
        }


def config_hash(cfg: AgentConfig) -> str:
    """A short stable digest of the effective configuration (reported by ``info``)."""
    return hashlib.sha256(repr(cfg).encode()).hexdigest()[:16]

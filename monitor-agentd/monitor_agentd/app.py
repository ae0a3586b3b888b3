"""The monitor-agentd lifecycle object: collect on a schedule, stay connected, finish cleanly.

Collection and connection are independent tasks: the agent keeps collecting into its spool while
disconnected, and the connect loop replays the spool after every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import platform
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from monitor_agentd import __version__, credentials, metrics
from monitor_agentd.backoff import Backoff, BackoffPolicy
from monitor_agentd.collectors import Collector, make_collector
from monitor_agentd.commands import CommandRunner
from monitor_agentd.config import AgentConfig
from monitor_agentd.dedup import SeenCommands
from monitor_agentd.errors import LinkFailed
from monitor_agentd.outbox import ResponseOutbox
from monitor_agentd.spool import Spool
from monitor_agentd.spool_store import SpoolStore
from monitor_agentd.state import StateDir
from monitor_agentd.stream import Link
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common import logsetup
from monitoring_common.exits import EX_OK, EX_TEMPFAIL
from monitoring_common.metrics_http import LatencyHistogram, MetricsEndpoint
from monitoring_common.notify import Notifier, reload_config, supervise

log = logging.getLogger(__name__)

Reloader = Callable[[], AgentConfig]
CAPABILITIES = ("metrics.v1", "heartbeat.v1", "ack.range.v1", "commands.v1")
#: On SIGTERM/SIGINT: how long to wait for outstanding acks before exiting anyway.
STOP_GRACE_SECONDS = 5.0


class Agent:
    """One agent process: ``await Agent(cfg).run(stop_event)`` returns the exit status."""

    def __init__(self, cfg: AgentConfig, *, collector: Collector | None = None) -> None:
        self.cfg = cfg
        self.agent_id = cfg.agent.effective_id
        self.hostname = socket.gethostname()
        self.instance_id = uuid.uuid4().hex
        self.started_at = time.time()
        self.collector = collector or make_collector(cfg.collection, self.agent_id)
        # Unreadable certificates or tokens are a configuration problem: refuse to start (exit 78).
        credentials.load(cfg.connection.tls)
        if cfg.connection.tls.mode == "plaintext":
            log.warning("TLS is off (connection.tls.mode: plaintext): metrics and commands travel unencrypted")
        # The state directory is locked for the life of the process (one agent per directory).
        self.state = StateDir(cfg.agent.state_dir)
        self.state.acquire()
        sp = cfg.spool
        store = SpoolStore(self.state.spool_dir, segment_records=sp.segment_records, fsync=sp.fsync)
        self.spool = Spool(sp.max_records, store, memory_records=sp.memory_records)
        # The sequence survives restarts: it continues after the last one ever spooled.
        self.sequence = self.spool.load()
        self.control: deque[pb.AgentMessage] = deque()
        self.finishing = asyncio.Event()
        self.interval = cfg.collection.interval_seconds
        self.last_collect = time.monotonic()
        self.connection_state = "starting"
        self.notifier = Notifier()
        self._interval_changed = asyncio.Event()
        self.responses = ResponseOutbox(self.spool.changed)
        self.commands = CommandRunner(
            cfg.commands,
            self.agent_id,
            self,
            self.responses,
            SeenCommands(self.state.seen_commands),
        )
        c = cfg.connection
        self.backoff = Backoff(BackoffPolicy.from_config(c))
        self.backoff_delay = 0.0
        self.connection_failures = 0
        self.collected = 0
        self.collect_seconds = LatencyHistogram(metrics.COLLECT_BUCKETS)
        self.metrics: MetricsEndpoint | None = metrics.endpoint(self) if cfg.metrics.listen else None
        self.link = Link(
            c,
            self.agent_id,
            self.spool,
            self.responses,
            self.control,
            self.finishing,
            self.registration,
            self._heartbeat,
            self._on_command,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, reload: asyncio.Event | None = None, reloader: Reloader | None = None
    ) -> int:
        """Run until the iterations are done and acknowledged, or ``stop`` is set."""
        log.info(
            "monitor-agentd %s starting: agent id '%s', %s mode, every %gs, servers %s",
            __version__,
            self.agent_id,
            self.collector.name,
            self.cfg.collection.interval_seconds,
            ", ".join(self.cfg.agent.servers),
        )
        helpers = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(supervise(self.notifier, self.healthy, self.status_line), name="supervise"),
            asyncio.create_task(self._reload_loop(reload or asyncio.Event(), reloader), name="reload"),
        ]
        collector = asyncio.create_task(self._collect_loop(), name="collect")
        connector = asyncio.create_task(self._connect_loop(), name="connect")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        self.notifier.ready(self.status_line())
        try:
            await asyncio.wait({collector, connector, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if connector.done():  # only on a bug: it returns after finishing
                return connector.result()
            by_signal = stop.is_set()
            if collector.done() and not by_signal:
                collector.result()  # re-raise a collector failure
            collector.cancel()
            self._finish()
            self.notifier.stopping(self.status_line())
            grace = STOP_GRACE_SECONDS if by_signal else self.cfg.connection.ack_timeout_seconds
            # Wait for the graceful close (last acks, goodbye); a signal arriving now cuts it short.
            waiting = {connector} if by_signal else {connector, stopper}
            await asyncio.wait(waiting, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            if connector.done():
                return connector.result()
            if by_signal or stop.is_set():
                log.info("Stopping with %d metrics unacknowledged; they stay spooled on disk", len(self.spool))
                return EX_OK
            log.error("✗ Stopping with %d metrics unacknowledged after waiting %.0fs", len(self.spool), grace)
            return EX_TEMPFAIL
        finally:
            await self.commands.close()
            tasks = [collector, connector, stopper, *helpers]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.spool.close()  # everything unacknowledged is already on disk; replayed next start
            self.state.release()
            if self.metrics is not None:
                self.metrics.close()

    def start_metrics(self) -> None:
        """Serve /metrics if configured; OSError (naming the address) if it cannot listen."""
        if self.metrics is not None:
            self.metrics.start()

    def healthy(self) -> bool:
        """Watchdog condition: collection keeps happening (a wedged loop stops the pings anyway)."""
        if self.finishing.is_set():
            return True
        return time.monotonic() - self.last_collect < max(3 * self.interval, 30.0)

    def status_line(self) -> str:
        """STATUS= for `systemctl status`: connection, spool depth, last ack."""
        if self.link.connected.is_set():
            connection = f"streaming to {self.link.server_id or '?'}"
        else:
            connection = self.connection_state
        dropped = f", {self.spool.dropped} dropped" if self.spool.dropped else ""
        return f"{connection}; spool {len(self.spool)} unacked{dropped}; last ack #{self.spool.last_acked}"

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
            self.set_interval(effective.collection.interval_seconds)
        c = effective.connection
        self.backoff.policy = BackoffPolicy.from_config(c)
        self.link.reconfigure(c)
        self.spool.max_records = effective.spool.max_records
        self.commands.reconfigure(effective.commands)
        self.cfg = effective
        log.info(
            "✓ Configuration reloaded (interval %gs, %d commands allowed)",
            self.interval,
            len(effective.commands.definitions),
        )

    def _finish(self) -> None:
        self.finishing.set()
        self.spool.changed.set()  # wake the writer so it can close the stream once all is acked

    # -- collection ------------------------------------------------------------------------------

    async def _collect_loop(self) -> None:
        iterations = self.cfg.collection.iterations
        # Give the first connection up to one interval, so a healthy start streams from record #1.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.connected.wait(), timeout=self.interval)
        last = time.monotonic()
        for i in itertools.count(1):
            self.collect_now()
            if iterations and i >= iterations:
                log.info("✓ Completed %d iterations. Stopping stream.", iterations)
                return
            # Sleep to the next slot of a fixed schedule (collection time adds no drift); a
            # set-interval command re-plans from the last collection.
            while True:
                self._interval_changed.clear()
                delay = max(0.0, last + self.interval - time.monotonic())
                try:
                    await asyncio.wait_for(self._interval_changed.wait(), timeout=delay)
                except TimeoutError:
                    break
            last += self.interval
            if time.monotonic() - last > self.interval:  # fell behind (suspend, overload): no burst
                last = time.monotonic()

    async def _heartbeat_loop(self) -> None:
        """A heartbeat every interval while connected -- also while only waiting for acks, so the
        server never takes a quiet but healthy agent for a stale one."""
        await self.link.connected.wait()
        while True:
            if self.link.connected.is_set():
                self.control.append(pb.AgentMessage(heartbeat=self._heartbeat(pb.AGENT_STATE_RUNNING)))
                self.spool.changed.set()
            await asyncio.sleep(self.interval)

    # -- built-in commands (monitor_agentd.commands.Builtins) -----------------------------------

    def collect_now(self) -> int:
        """Collect one record into the spool (also the ``collect`` command); returns its sequence."""
        started = time.monotonic()
        record = self._collect()
        self.last_collect = time.monotonic()
        self.collect_seconds.observe(self.last_collect - started)
        self.collected += 1
        connected = self.link.connected.is_set()
        self.spool.add(record)
        log.info(
            "[%d] %s metrics:\n  CPU: %.2f%%\n  Memory: %.2f%%",
            record.sequence,
            "Streamed" if connected else "Spooled (not connected)",
            record.cpu.percent,
            record.memory.percent,
        )
        return record.sequence

    def set_interval(self, seconds: float) -> float:
        """Change the collection interval now (``set-interval``); returns the previous one."""
        old, self.interval = self.interval, seconds
        self._interval_changed.set()
        log.info("Collection interval changed from %gs to %gs", old, seconds)
        return old

    def info(self) -> dict[str, Any]:
        """The ``info`` command's answer."""
        return {
            "agent_id": self.agent_id,
            "version": __version__,
            "config_hash": config_hash(self.cfg),
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "interval_seconds": self.interval,
            "mode": self.collector.name,
            "last_sequence": self.sequence,
            "spool": {"depth": len(self.spool), "dropped": self.spool.dropped, "last_acked": self.spool.last_acked},
            "commands": {"running": self.commands.running, "allowed": sorted(self.cfg.commands.definitions)},
            "server": self.link.server_id,
        }

    def _collect(self) -> pb.MetricsData:
        self.sequence += 1
        record = pb.MetricsData(
            agent_id=self.agent_id, sequence=self.sequence, hostname=self.hostname, source=self.collector.name
        )
        record.collected_at.GetCurrentTime()
        record.labels.update(self.cfg.agent.labels)
        self.collector.collect(record, self.sequence)
        return record

    def _heartbeat(self, state: pb.AgentState.ValueType) -> pb.AgentHeartbeat:
        return pb.AgentHeartbeat(
            agent_id=self.agent_id,
            sent_at=_now(),
            state=state,
            last_sequence=self.sequence,
            spool_depth=len(self.spool),
            spool_dropped=self.spool.dropped,
            interval_seconds=self.interval,
            running_commands=self.commands.running,
        )

    def registration(self) -> pb.AgentRegistration:
        """What RegisterAgent tells the server on each connection."""
        reg = pb.AgentRegistration(
            agent_id=self.agent_id,
            hostname=self.hostname,
            agent_version=__version__,
            capabilities=CAPABILITIES,
            protocol_version=1,
            instance_id=self.instance_id,
            os=platform.system(),
            platform=platform.platform(),
            interval_seconds=self.interval,
            last_sequence=self.sequence,
        )
        reg.started_at.FromSeconds(int(self.started_at))
        reg.labels.update(self.cfg.agent.labels)
        return reg

    def _on_command(self, command: pb.CommandMessage) -> None:
        self.commands.submit(command)

    # -- connection ------------------------------------------------------------------------------

    async def _connect_loop(self) -> int:
        for attempt in itertools.count():
            servers = self.cfg.agent.servers  # re-read: a reload may change the list
            address = servers[attempt % len(servers)]
            self.connection_state = f"connecting to {address}"
            try:
                await self.link.run(address)
                return EX_OK
            except LinkFailed as exc:
                reason, immediate = str(exc), exc.immediate
            # Reset the backoff only after a stream that stayed up: no saw-tooth reconnect hammering.
            if self.link.last_stream_seconds >= self.cfg.connection.healthy_after_seconds or immediate:
                self.backoff.reset()
            delay = 0.0 if immediate else self.backoff.next_delay()
            self.connection_failures += 1
            self.backoff_delay = delay
            self.connection_state = f"backing off {delay:.1f}s after: {reason}"
            log.warning(
                "✗ Connection to %s failed: %s; reconnecting in %.1fs (%d metrics spooled)",
                address,
                reason,
                delay,
                len(self.spool),
            )
            await asyncio.sleep(delay)
            self.backoff_delay = 0.0
        raise AssertionError("unreachable")  # itertools.count() never ends


def config_hash(cfg: AgentConfig) -> str:
    """A short stable digest of the effective configuration (reported by ``info``)."""
    return hashlib.sha256(repr(cfg).encode()).hexdigest()[:16]


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts

"""One cell of the matrix: start monitord(s) and agents, run the workload, inject one fault, let
the system settle, read the whole history back from Kafka and check the invariants."""

from __future__ import annotations

import random
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring_testsupport.kafka import KafkaBroker
from monitoring_testsupport.kafka_cluster import KafkaCluster
from monitoring_testsupport.matrix import cluster_faults, history, invariants, kafka_view
from monitoring_testsupport.matrix.agents import Agent, agent_config
from monitoring_testsupport.matrix.faults import Fault
from monitoring_testsupport.matrix.workload import CommandProducer, Mix, ResponseWatcher, Trickle
from monitoring_testsupport.netns import Netns, netns
from monitoring_testsupport.paths import free_port, unique
from monitoring_testsupport.procs import Monitord, start_monitord


@dataclass(frozen=True)
class CellSettings:
    """How big and how long one cell is."""

    #: Agents streaming from the start (plus one that connects after the fault, one that never does).
    agents: int = 3
    #: Seconds of workload before the fault.
    warmup: float = 4.0
    #: Seconds of workload after recovery (the latency probes).
    after: float = 6.0
    #: How long Kafka stays stopped, or the network cut.
    outage: float = 30.0
    #: Seconds to wait, past the longest TTL, for final answers.
    final_slack: float = 6.0
    #: Seconds after the last change before presence is judged.
    settle: float = 3.0
    #: The latency promise for commands to connected agents, in seconds.
    latency_limit: float = 2.0
    seed: int = 0
    mix: Mix = field(default_factory=Mix)
    #: monitord's kafka.delivery_timeout_ms (None: its default, 0 = never time a record out).
    delivery_timeout_ms: int | None = None


@dataclass
class Server:
    """One monitord address (port and server id kept across restarts) and its incarnations."""

    name: str
    root: Path
    bootstrap: str
    host: str
    kafka: dict[str, Any]
    port: int = field(default_factory=free_port)
    server_id: str = ""
    runs: list[Monitord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server_id = self.server_id or unique(self.name)

    @property
    def proc(self) -> Monitord:
        return self.runs[-1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait_commands: bool) -> None:
        """Start an incarnation; returns once it said READY=1 (and, if asked, consumes commands)."""
        extra = {
            "server": {"server_id": self.server_id, "listen": f"{self.host}:{self.port}", "log_each_record": False}
        }
        proc, _ = start_monitord(
            self.root,
            self.bootstrap,
            name=f"{self.name}-run{len(self.runs) + 1}",
            port=self.port,
            extra={**extra, "kafka": self.kafka},
            wait_commands=wait_commands,
        )
        self.runs.append(proc)

    def kill(self, sig: int) -> None:
        self.proc.signal(sig)
        self.proc.wait(30)

    def wait_log(self, pattern: str, timeout: float) -> None:
        self.proc.wait_for(pattern, timeout)

    def stop(self) -> None:
        for proc in self.runs:
            proc.stop(timeout=15)


class Cell:
    """The processes, the workload and the clock of one cell; faults act on it."""

    def __init__(
        self,
        fault: Fault,
        bootstrap: str,
        root: Path,
        settings: CellSettings,
        broker: KafkaBroker | None,
        ns: Netns | None,
        cluster: KafkaCluster | None = None,
    ) -> None:
        self.fault, self.bootstrap, self.root, self.settings, self.broker, self.ns = (
            fault,
            bootstrap,
            root,
            settings,
            broker,
            ns,
        )
        self.cluster = cluster
        self.fault_at = 0.0
        self.rng = random.Random(settings.seed)
        self.notes: list[str] = []
        self.recovered_at: float | None = None
        kafka: dict[str, Any] = {}
        if settings.delivery_timeout_ms is not None:
            kafka["delivery_timeout_ms"] = settings.delivery_timeout_ms
        host = "0.0.0.0" if ns else "127.0.0.1"
        self.servers = [Server(f"monitord-{'ab'[i]}", root, bootstrap, host, kafka) for i in range(fault.servers)]
        prefix = unique(f"mx-{fault.name}")
        self.agents = [self._agent(f"{prefix}-{i}", i) for i in range(settings.agents)]
        self.late = Agent(f"{prefix}-late", root, [s.address for s in self.servers])
        self.absent_id = f"{prefix}-absent"
        self.since: history.Marks = {}

    def _agent(self, agent_id: str, index: int) -> Agent:
        addresses = [s.address for s in self.servers]
        if index % 3 == 2:
            addresses.reverse()  # with two servers, one agent prefers the second
        if index == 0 and self.ns is not None:
            port = self.servers[0].port
            cfg = agent_config(
                keepalive_seconds=10, keepalive_timeout_seconds=5, backoff_max_seconds=5, connect_timeout_seconds=3
            )
            return Agent(agent_id, self.root, [f"{self.ns.host_ip}:{port}"], cfg, wrap=self.ns.wrap)
        return Agent(agent_id, self.root, addresses)

    def start(self) -> None:
        self.since = history.marks(self.bootstrap)
        for server in self.servers:
            server.start(wait_commands=True)
        for agent in self.agents:
            agent.start()
        for agent in self.agents:
            agent.wait_connected(30)
        self.producer = CommandProducer(self.bootstrap)
        self.watcher = ResponseWatcher(self.bootstrap, self.since)
        ids = [a.agent_id for a in self.agents]
        self.trickle = Trickle(self.producer, ids, self.late.agent_id, self.absent_id, self.rng, self.settings.mix)
        self.trickle.start()

    def note(self, text: str) -> None:
        """Something the cell saw that the table should mention."""
        self.notes.append(text)

    def restart(self, server: Server) -> None:
        """Start ``server`` again (same port, same server id); returns at its READY=1."""
        server.start(wait_commands=False)

    def recovered(self, server: Server) -> None:
        """The fault is over: ``server`` holds every streaming agent again. Pings produced from now
        on are the latency probes."""
        server.proc.wait_agents(len(self.agents), timeout=60)
        self.recovered_at = time.time()

    def wait_idle(self, agent_id: str, timeout: float) -> bool:
        """Wait until every confirmed command for ``agent_id`` has a final answer."""
        self.producer.flush(10)
        pending = [s.command_id for s in self.producer.confirmed() if s.agent_id == agent_id]
        return self.watcher.wait(lambda: all(self.watcher.has_final(c) for c in pending), timeout)

    def live_addresses(self) -> list[str]:
        return [s.address for s in self.servers if s.proc.running()]

    def finish(self) -> dict[str, list[history.Rec]]:
        """Late agent, last probes, bounded waits for finals and metrics; returns the history."""
        self.late.servers = self.live_addresses()
        self.late.start()
        time.sleep(self.settings.after)
        self.trickle.stop()
        if self.producer.flush(60):
            self.note("some commands were never confirmed by Kafka (not counted)")
        self._wait_finals()
        self.targets = {a.agent_id: a.highest() for a in self.streaming()}
        self._wait_metrics()
        time.sleep(self.settings.settle)
        runs = [proc for server in self.servers for proc in server.runs]
        self.kafka_figure = kafka_view.figure(runs, self.fault.kafka_downs, self.fault.kafka_degraded)
        ids = [*self.targets, self.absent_id]
        hist = history.read_history(self.bootstrap, ids, self.since)
        if self.cluster is not None:
            worst, partition = cluster_faults.stall(hist["monitoring-data"], int(self.fault_at * 1000))
            self.note(f"stall: longest gap in monitoring-data-{partition} {worst:.1f} s (Kafka append times)")
        return hist

    def streaming(self) -> list[Agent]:
        """The agents running at the end: every agent of the cell but the absent one."""
        return [*self.agents, self.late]

    def _wait_finals(self) -> None:
        sent = self.producer.confirmed()
        last = max((s.produced_at + s.ttl for s in sent), default=time.time())
        budget = max(0.0, last + self.settings.final_slack - time.time())
        if not self.watcher.wait(lambda: all(self.watcher.has_final(s.command_id) for s in sent), budget):
            self.note(f"waited {budget:.0f}s for final answers")
        time.sleep(2.0)  # duplicates of the last finals would show by now

    def _wait_metrics(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = history.read_history(self.bootstrap, self.targets, self.since, topics=("monitoring-data",))
            if invariants.metrics_complete(hist["monitoring-data"], self.targets):
                return
            time.sleep(1.0)
        self.note(f"metrics still incomplete {timeout:.0f}s after the snapshot")

    def evaluate(self, hist: dict[str, list[history.Rec]], label: str, seconds: float) -> invariants.CellResult:
        return invariants.evaluate(
            label=label,
            fault=self.fault.name,
            hist=hist,
            targets=self.targets,
            sent=self.producer.confirmed(),
            recovered_at=self.recovered_at,
            probe_agents={a.agent_id for a in self.agents},
            limit=self.settings.latency_limit,
            notes=self.notes,
            seconds=seconds,
            extra=[self.kafka_figure],
        )

    def close(self) -> None:
        """Stop the workload and every process of the cell (idempotent)."""
        if hasattr(self, "trickle"):
            self.trickle.stop()
        if hasattr(self, "watcher"):
            self.watcher.close()
        for agent in [*self.agents, self.late]:
            agent.stop()
        for server in self.servers:
            server.stop()


def run_cell(
    fault: Fault,
    bootstrap: str,
    root: Path,
    settings: CellSettings | None = None,
    broker: KafkaBroker | None = None,
    label: str | None = None,
    cluster: KafkaCluster | None = None,
) -> invariants.CellResult:
    """Run one cell end to end and return its figures (processes are stopped whatever happens)."""
    settings = settings or CellSettings()
    started = time.monotonic()
    with ExitStack() as stack:
        ns = stack.enter_context(netns()) if fault.netns else None
        cell = Cell(fault, bootstrap, root, settings, broker, ns, cluster)
        stack.callback(cell.close)
        cell.start()
        time.sleep(settings.warmup)
        cell.trickle.late_open.clear()
        cell.fault_at = time.time()
        fault.inject(cell)
        hist = cell.finish()
        return cell.evaluate(hist, label or fault.name, time.monotonic() - started)

"""The faults, one per cell. Each ``inject`` breaks something, repairs it, and calls
:meth:`Cell.recovered` at the moment the system should keep its promises again (the restarted
monitord said READY=1 and the agents are back; Kafka is back; the network is back)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitoring_testsupport.matrix import cluster_faults
from monitoring_testsupport.matrix.agents import impostor_answers

if TYPE_CHECKING:
    from monitoring_testsupport.matrix.cell import Cell


@dataclass(frozen=True)
class Fault:
    """One kind of fault and what its cell needs."""

    name: str
    description: str
    inject: Callable[[Cell], None]
    #: monitord instances (the agents list them all in agent.servers).
    servers: int = 1
    #: The first agent runs in a network namespace of its own.
    netns: bool = False
    #: The cell needs a broker of its own (it gets stopped).
    private_kafka: bool = False
    #: The cell runs on the 3-node cluster (monitord gets all three bootstrap servers).
    cluster: bool = False
    #: How often monitord must say Kafka is down: once per outage of confirmations longer than
    #: kafka.down_after_seconds, and never for a fault Kafka rides out.
    kafka_downs: int = 0
    #: monitord must say Kafka is degraded (partitions without a leader or under min ISR).
    kafka_degraded: bool = False


def _monitord_kill9(cell: Cell) -> None:
    server = cell.servers[0]
    server.kill(signal.SIGKILL)
    cell.restart(server)
    cell.recovered(server)


def _monitord_sigterm(cell: Cell) -> None:
    server = cell.servers[0]
    server.kill(signal.SIGTERM)
    cell.restart(server)
    cell.recovered(server)


def _second_monitord_kill9(cell: Cell) -> None:
    cell.servers[0].kill(signal.SIGKILL)
    cell.recovered(cell.servers[1])


def _monitord_hung_agents_moved(cell: Cell) -> None:
    hung, other = cell.servers
    hung.proc.signal(signal.SIGSTOP)  # hung (a paused VM, a stuck host): it cannot see its streams end
    try:
        for agent in cell.agents:  # the agents restart meanwhile and take the other instance
            agent.kill()
            agent.servers = [other.address, hung.address]
            agent.start()
        for agent in cell.agents:
            agent.wait_connected(30)
    finally:
        hung.proc.signal(signal.SIGCONT)  # ... and now publishes its late DISCONNECTEDs
    hung.wait_log(rf"Agent '{cell.agents[0].agent_id}' disconnected", timeout=30)
    cell.recovered(other)


def _agent_kill9_idle(cell: Cell) -> None:
    victim = cell.agents[0]
    cell.trickle.paused.add(victim.agent_id)
    if not cell.wait_idle(victim.agent_id, timeout=20):
        cell.note(f"{victim.agent_id} still had commands without a final before the kill")
    victim.kill()
    victim.start()
    victim.wait_connected(30)
    cell.trickle.paused.discard(victim.agent_id)
    cell.recovered(cell.servers[0])


def _agent_kill9_mid_command(cell: Cell) -> None:
    victim = cell.agents[0]
    cell.trickle.paused.add(victim.agent_id)
    cell.wait_idle(victim.agent_id, timeout=20)
    sent = cell.producer.send(victim.agent_id, "slow", ttl=cell.settings.mix.slow_ttl, kind="slow-killed")
    if not cell.watcher.wait(lambda: "DELIVERED" in cell.watcher.statuses(sent.command_id), timeout=15):
        cell.note(f"slow command {sent.command_id} not DELIVERED within 15 s")
    time.sleep(1.0)  # the command is running now (it takes 5 s)
    victim.kill()
    victim.start()
    victim.wait_connected(30)
    cell.trickle.paused.discard(victim.agent_id)
    cell.recovered(cell.servers[0])


def _kafka_stopped(cell: Cell) -> None:
    assert cell.broker is not None, "this cell needs a private broker"
    cell.broker.stop()
    stopped_at = time.monotonic()
    time.sleep(max(0.0, cell.settings.outage - (time.monotonic() - stopped_at)))
    cell.broker.start()
    server = cell.servers[0]
    try:
        server.wait_log(r"Kafka reachable again", timeout=90)
    except AssertionError:
        cell.note("monitord did not log 'Kafka reachable again' within 90 s")
    cell.recovered(server)


def _network_cut(cell: Cell) -> None:
    assert cell.ns is not None, "this cell needs a network namespace"
    victim = cell.agents[0]
    before = victim.connections()
    cell.ns.link(up=False)
    cut_at = time.monotonic()
    try:
        victim.proc.wait_for(r"✗ Connection to .* failed", timeout=cell.settings.outage)
        cell.note(f"the agent noticed the cut after {time.monotonic() - cut_at:.1f} s (keepalive 10 s + 5 s)")
    except AssertionError:
        cell.note("the agent did not notice the cut while it lasted")
    time.sleep(max(0.0, cell.settings.outage - (time.monotonic() - cut_at)))
    cell.ns.link(up=True)
    victim.wait_connected(60, count=before + 1)
    cell.recovered(cell.servers[0])


def _impostor_answers(cell: Cell) -> None:
    # Issue 14, finding 4: another agent's final answers once marked a command answered everywhere,
    # so the agent it was for never got it. The late agent's commands are held now: answer them.
    target = cell.late.agent_id
    cell.producer.flush(10)
    held = [s.command_id for s in cell.producer.confirmed() if s.agent_id == target]
    refused = impostor_answers(cell.servers[0].address, f"{target}-impostor", held)
    if refused != 2 * len(held):
        cell.note(f"{2 * len(held) - refused} of {2 * len(held)} forged responses were accepted")
    cell.recovered(cell.servers[0])


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("monitord-kill9", "monitord SIGKILL, restarted on the same port", _monitord_kill9),
        Fault("monitord-sigterm", "monitord SIGTERM, restarted on the same port", _monitord_sigterm),
        Fault("two-monitord-kill9", "two monitord, one SIGKILLed (not restarted)", _second_monitord_kill9, servers=2),
        Fault(
            "monitord-hung-moved",
            "one of two monitord hung (SIGSTOP) while its agents restart onto the other, then resumed",
            _monitord_hung_agents_moved,
            servers=2,
        ),
        Fault("agent-kill9-idle", "agent SIGKILL while idle, restarted (same state dir)", _agent_kill9_idle),
        Fault("agent-kill9-command", "agent SIGKILL during a slow command, restarted", _agent_kill9_mid_command),
        Fault("kafka-stopped", "Kafka broker stopped 30 s", _kafka_stopped, private_kafka=True, kafka_downs=1),
        Fault("network-cut", "agent's network cut 30 s (own netns)", _network_cut, netns=True),
        Fault(
            "leader-kill9",
            "the broker leading an agent's partition SIGKILLed, restarted 3 s later (3-node cluster)",
            cluster_faults.leader_kill9,
            cluster=True,
        ),
        Fault(
            "two-brokers-down",
            "two of three brokers stopped (SIGTERM) 30 s, then started",
            cluster_faults.two_brokers_down,
            cluster=True,
            kafka_downs=1,
            kafka_degraded=True,
        ),
        Fault(
            "rolling-restart",
            "each broker in turn SIGTERMed and started, waiting for a full ISR",
            cluster_faults.rolling_restart,
            cluster=True,
        ),
        Fault(
            "broker-monitord-kill9",
            "a leading broker and monitord SIGKILLed together, both restarted",
            cluster_faults.broker_and_monitord_kill9,
            cluster=True,
        ),
        Fault(
            "impostor-answers",
            "another agent streams DELIVERED and SUCCEEDED for the late agent's held commands",
            _impostor_answers,
        ),
    )
}

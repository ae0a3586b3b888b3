"""Broker faults on the 3-node cluster (RF 3, min.insync.replicas 2), and the stall they cause.

Each fault repairs itself and waits until every partition's ISR is full again before it calls
:meth:`Cell.recovered`, so the next fault (or cell) starts on a healthy cluster.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from monitoring_testsupport.kafka_cluster import NODES, KafkaCluster
from monitoring_testsupport.matrix import history

if TYPE_CHECKING:
    from monitoring_testsupport.matrix.cell import Cell

TOPICS = ("monitoring-data", "command-responses", "commands", "agent-status")
#: How long a killed leader stays down before it is started again.
LEADER_DOWN = 3.0


def _cluster(cell: Cell) -> KafkaCluster:
    assert cell.cluster is not None, "this cell needs the 3-node cluster"
    return cell.cluster


def _victim_leader(cell: Cell) -> int:
    """The node leading the monitoring-data partition of the first agent."""
    cluster = _cluster(cell)
    agent_id = cell.agents[0].agent_id
    recs = history.read_history(cell.bootstrap, [agent_id], cell.since, topics=("monitoring-data",))
    mine = recs["monitoring-data"]
    partition = mine[0].partition if mine else 0
    leader = cluster.leaders("monitoring-data")[partition]
    cell.note(f"victim: node {leader}, leader of monitoring-data-{partition} ({agent_id})")
    return leader


def _rejoined(cell: Cell, label: str) -> None:
    waited = _cluster(cell).wait_in_sync(TOPICS, timeout=90)
    cell.note(f"{label}: ISR full {waited:.1f} s after the restart")


def leader_kill9(cell: Cell) -> None:
    cluster = _cluster(cell)
    node = _victim_leader(cell)
    cluster.kill_node(node)
    time.sleep(LEADER_DOWN)
    cluster.start_node(node)
    _rejoined(cell, f"node {node}")
    cell.recovered(cell.servers[0])


def two_brokers_down(cell: Cell) -> None:
    cluster = _cluster(cell)
    keep = _victim_leader(cell) % 3 + 1  # the agent's leader goes down, and one more
    down = [n for n in NODES if n != keep]
    stopped_at = time.monotonic()
    for node in down:
        cluster.stop_node(node)
    cell.note(f"nodes {down[0]} and {down[1]} stopped in {time.monotonic() - stopped_at:.1f} s")
    time.sleep(max(0.0, cell.settings.outage - (time.monotonic() - stopped_at)))
    for node in down:
        cluster.start_node(node)
    _rejoined(cell, f"nodes {down[0]}, {down[1]}")
    cell.recovered(cell.servers[0])


def rolling_restart(cell: Cell) -> None:
    cluster = _cluster(cell)
    for node in NODES:
        cluster.stop_node(node)
        cluster.start_node(node)
        _rejoined(cell, f"node {node}")
    cell.recovered(cell.servers[0])


def broker_and_monitord_kill9(cell: Cell) -> None:
    cluster = _cluster(cell)
    node = _victim_leader(cell)
    server = cell.servers[0]
    cluster.kill_node(node)
    server.kill(signal.SIGKILL)
    cell.restart(server)
    cluster.start_node(node)
    _rejoined(cell, f"node {node}")
    cell.recovered(server)


def stall(recs: list[history.Rec], since_ms: int) -> tuple[float, int]:
    """The longest gap between consecutive records of one partition (Kafka append timestamps)
    that ended after ``since_ms``: (seconds, partition)."""
    worst, where = 0.0, -1
    last: dict[int, int] = {}
    for rec in sorted(recs, key=lambda r: (r.partition, r.offset)):
        before = last.get(rec.partition)
        last[rec.partition] = rec.timestamp_ms
        if before is not None and rec.timestamp_ms > since_ms and rec.timestamp_ms - before > worst * 1000:
            worst, where = (rec.timestamp_ms - before) / 1000, rec.partition
    return worst, where

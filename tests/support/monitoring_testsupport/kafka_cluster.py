"""A real 3-node Kafka cluster for tests (scripts/kafka-cluster.sh): RF 3, min.insync.replicas 2.

Nodes are numbered 1..3 like the KRaft node ids; a test kills, stops and starts them one by one
and asks the cluster's own metadata who leads what and whether every replica is back in sync.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from monitoring_testsupport.paths import REPO, free_port

KAFKA_CLUSTER_SH = REPO / "scripts" / "kafka-cluster.sh"
NODES = (1, 2, 3)
#: Brokers stamp records when they append them (LogAppendTime), so a record's Kafka timestamp is
#: when it was written: the gaps between them are the stalls a fault caused.
EXTRA_PROPERTIES = "log.message.timestamp.type=LogAppendTime"


def _ports() -> list[int]:
    ports: set[int] = set()
    while len(ports) < 6:
        ports.add(free_port())
    return sorted(ports)


@dataclass
class KafkaCluster:
    """Three brokers on 127.0.0.1 run by scripts/kafka-cluster.sh under ``data_dir``."""

    data_dir: Path
    ports: list[int] = field(default_factory=_ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def address(self, node: int) -> str:
        return f"127.0.0.1:{self.ports[node - 1]}"

    def _run(self, *args: str, timeout: float = 300) -> None:
        env = dict(os.environ)
        env.pop("KAFKA_BOOTSTRAP", None)
        env.update(
            KAFKA_CLUSTER_DIR=str(self.data_dir),
            KAFKA_CLUSTER_PORTS=" ".join(map(str, self.ports[:3])),
            KAFKA_CLUSTER_CONTROLLER_PORTS=" ".join(map(str, self.ports[3:])),
            KAFKA_CLUSTER_EXTRA_PROPERTIES=EXTRA_PROPERTIES,
            KAFKA_STOP_TIMEOUT="20",
        )
        command = [str(KAFKA_CLUSTER_SH), *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")

    def start(self) -> None:
        """Start the nodes that are not running and ensure the topics."""
        self._run("start")

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        self._run("stop")

    def kill_node(self, node: int) -> None:
        """SIGKILL one node: a crash, no controlled shutdown."""
        self._run("kill", str(node))

    def stop_node(self, node: int) -> None:
        """SIGTERM one node and wait for its controlled shutdown."""
        self._run("stop", str(node))

    def start_node(self, node: int) -> None:
        """Start one node; returns once it said 'Kafka Server started'."""
        self._run("start", str(node))

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def leaders(self, topic: str) -> dict[int, int]:
        """partition → leader node id (-1 while it has none)."""
        meta = self._admin().list_topics(topic, timeout=10)
        return {p: m.leader for p, m in meta.topics[topic].partitions.items()}

    def under_replicated(self, topics: tuple[str, ...]) -> list[str]:
        """The partitions of ``topics`` whose ISR is not all three replicas (or that lack a leader)."""
        meta = self._admin().list_topics(timeout=10)
        short: list[str] = []
        for name in topics:
            for p, m in meta.topics[name].partitions.items():
                if m.leader < 0 or len(m.isrs) < len(m.replicas):
                    short.append(f"{name}-{p}")
        return short

    def wait_in_sync(self, topics: tuple[str, ...], timeout: float = 60.0) -> float:
        """Wait until every partition of ``topics`` has its full ISR; returns the seconds waited."""
        started = time.monotonic()
        while True:
            try:
                short = self.under_replicated(topics)
            except Exception as exc:  # metadata not answered yet: the node is just coming back
                short = [repr(exc)]
            if not short:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"ISR not full after {timeout:.0f} s: {short[:6]}")
            time.sleep(0.5)

"""A real Kafka broker for tests and benchmarks (scripts/kafka.sh), and readers of what landed in it.

Nothing here mocks Kafka: tests read back the records with their own consumer.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from monitord import records
from monitoring_testsupport.paths import KAFKA_SH, free_port, unique
from monitoring_testsupport.procs import COLLECTED, Proc


@dataclass
class KafkaBroker:
    """A broker run by scripts/kafka.sh (or an existing cluster named by KAFKA_BOOTSTRAP)."""

    port: int
    data_dir: Path | None
    external: str | None = None

    @property
    def bootstrap(self) -> str:
        return self.external or f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.external is None:
            env.pop("KAFKA_BOOTSTRAP", None)
            env["KAFKA_PORT"] = str(self.port)
            env["KAFKA_CONTROLLER_PORT"] = str(free_port())
            assert self.data_dir is not None
            env["KAFKA_DATA_DIR"] = str(self.data_dir)
        return env

    def _run(self, command: str, timeout: float = 300) -> None:
        result = subprocess.run(
            [str(KAFKA_SH), command], env=self._env(), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


def read_records(
    bootstrap: str,
    topic: str,
    agent_ids: Iterable[str],
    *,
    expect: int,
    timeout: float = 30.0,
    settle: float = 1.0,
    stop: Callable[[list[records.DecodedRecord]], bool] | None = None,
    tail: float = 0.0,
) -> list[records.DecodedRecord]:
    """Every record of ``agent_ids`` in ``topic``, reading from the beginning.

    Reads until ``expect`` records were seen (or ``stop(found)`` is true) and then ``settle``
    (or ``tail``) more seconds to catch extras, or until ``timeout``.
    """
    wanted = set(agent_ids)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = meta.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found: list[records.DecodedRecord] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is None and len(found) >= expect:
                settle_until = time.monotonic() + settle
            if settle_until is None and stop is not None and stop(found):
                settle_until = time.monotonic() + tail
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for msg in consumer.consume(500, timeout=0.2):
                key = msg.key()
                if msg.error() or key is None or key.decode() not in wanted:
                    continue
                found.append(records.decode(key, msg.value(), msg.headers()))  # type: ignore[arg-type]
        return found
    finally:
        consumer.close()


def sequences(found: list[records.DecodedRecord], agent_id: str) -> list[int]:
    return [r.message.sequence for r in found if r.agent_id == agent_id]  # type: ignore[attr-defined]


def loss_report(name: str, sent: dict[str, int], found: list[records.DecodedRecord]) -> dict[str, int]:
    """Print and return ``sent / in Kafka / lost / duplicated`` over all agents (sequences 1..sent)."""
    in_kafka = lost = dup = 0
    for agent_id, n in sent.items():
        seqs = sequences(found, agent_id)
        uniq = set(seqs)
        in_kafka += len(uniq & set(range(1, n + 1)))
        lost += n - len(uniq & set(range(1, n + 1)))
        dup += len(seqs) - len(uniq)
    total = sum(sent.values())
    print(f"{name}: sent {total} / in Kafka {in_kafka} / lost {lost} / duplicated {dup}")
    return {"sent": total, "in_kafka": in_kafka, "lost": lost, "duplicated": dup}


def stop_and_check_agent(name: str, agent: Proc, bootstrap: str, agent_id: str) -> dict[str, int]:
    """SIGTERM a running ``--iterations 0`` agent (it exits 0 once its records are acknowledged),
    then compare Kafka with every sequence it logged as collected; returns :func:`loss_report`."""
    status = agent.stop(timeout=30)
    assert status == 0, f"{agent.name} exited {status}:\n{agent.text()[-3000:]}"
    collected = max((int(n) for n in COLLECTED.findall(agent.text())), default=0)
    found = read_records(bootstrap, "monitoring-data", [agent_id], expect=collected, timeout=60)
    return loss_report(name, {agent_id: collected}, found)


def bench_broker(tmp: Path) -> tuple[KafkaBroker, bool]:
    """$KAFKA_BOOTSTRAP's cluster, or a private broker started now; (broker, started_here)."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    broker = KafkaBroker(0, None, external) if external else KafkaBroker(free_port(), tmp / "kafka")
    broker.start()
    return broker, not external

"""The command side of the workload: the harness's own producer (a command counts once its
delivery report confirmed it), a steady trickle of mixed commands, and a live watcher of
``command-responses`` that tells the cell when every command has had its final answer."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.commands import FINAL_STATUSES
from monitoring_testsupport.matrix.history import Marks
from monitoring_testsupport.paths import unique

#: The configured slow command every agent of the matrix has (see agents.py).
SLOW = "slow"


@dataclass
class Sent:
    """One command the harness produced; ``confirmed`` once Kafka's delivery report said so."""

    command_id: str
    agent_id: str
    kind: str
    ttl: int
    produced_at: float
    confirmed: bool = False
    #: The record's Kafka timestamp (ms), from the delivery report.
    timestamp_ms: int | None = None


class CommandProducer:
    """Produces CommandMessages as proto3 JSON (as an operator's tool does) to ``commands``."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.time) -> None:
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0, "message.timeout.ms": 120_000}
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: list[Sent] = []

    def send(self, agent_id: str, command: str, *args: str, ttl: int, kind: str) -> Sent:
        """Produce one command (not waiting for its delivery report)."""
        sent = Sent(unique(kind), agent_id, kind, ttl, self._clock())
        created = datetime.fromtimestamp(sent.produced_at, UTC).isoformat().replace("+00:00", "Z")
        body = {
            "commandId": sent.command_id,
            "agentId": agent_id,
            "command": command,
            "args": list(args),
            "ttlSeconds": ttl,
            "createdAt": created,
            "requestedBy": "fault-matrix",
        }

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                sent.timestamp_ms = int(msg.timestamp()[1])
                sent.confirmed = True

        with self._lock:
            self._sent.append(sent)
            self._producer.produce(
                "commands", key=agent_id.encode(), value=json.dumps(body).encode(), on_delivery=delivered
            )
            self._producer.poll(0)
        return sent

    def poll(self) -> None:
        """Serve delivery reports."""
        with self._lock:
            self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait for every delivery report (at most ``timeout`` s); returns how many are still open."""
        with self._lock:
            return int(self._producer.flush(timeout))

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def confirmed(self) -> list[Sent]:
        """The commands Kafka confirmed: the ones the promises are about."""
        return [s for s in self.sent if s.confirmed]


@dataclass(frozen=True)
class Mix:
    """What the trickle sends, one command every ``period`` seconds, in a cycle of eight."""

    period: float = 0.4
    #: ``ping`` to a connected agent (also the latency probe).
    ping_ttl: int = 15
    #: ``ping`` with a short lifetime.
    short_ttl: int = 4
    #: ``ping`` for an agent that never connects: must end EXPIRED.
    absent_ttl: int = 3
    #: ``ping`` for the agent that connects only after the fault.
    late_ttl: int = 30
    #: the slow configured command.
    slow_ttl: int = 15

    @property
    def longest_ttl(self) -> int:
        return max(self.ping_ttl, self.short_ttl, self.absent_ttl, self.late_ttl, self.slow_ttl)


@dataclass
class Trickle:
    """A thread producing the mix: pings, slow commands, short-lived ones, ones for the late and
    the absent agent. ``paused`` agents get nothing; ``late_open`` gates the late agent's commands."""

    producer: CommandProducer
    targets: list[str]
    late_id: str
    absent_id: str
    rng: random.Random
    mix: Mix = field(default_factory=Mix)
    paused: set[str] = field(default_factory=set)
    late_open: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.late_open.set()
        self._thread = threading.Thread(target=self._run, name="matrix-trickle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        step = 0
        while not self._stop.wait(self.mix.period):
            step += 1
            self.step(step)

    def step(self, step: int) -> None:
        """Send the ``step``-th command of the cycle (nothing if its agent is paused)."""
        slot, mix = step % 8, self.mix
        active = [t for t in self.targets if t not in self.paused]
        if slot == 7:
            self.producer.send(self.absent_id, "ping", ttl=mix.absent_ttl, kind="absent")
        elif slot == 1 and self.late_open.is_set():
            self.producer.send(self.late_id, "ping", ttl=mix.late_ttl, kind="late")
        elif not active:
            self.producer.poll()
        elif slot == 3:
            self.producer.send(self.rng.choice(active), SLOW, ttl=mix.slow_ttl, kind="slow")
        elif slot == 5:
            self.producer.send(self.rng.choice(active), "ping", ttl=mix.short_ttl, kind="short")
        else:
            self.producer.send(self.rng.choice(active), "ping", ttl=mix.ping_ttl, kind="ping")


class ResponseWatcher:
    """Follows ``command-responses`` from the cell's start in a thread: the statuses seen per
    command id, so the cell can wait (bounded) for final answers. The invariants do not use it:
    they read the history again at the end."""

    def __init__(self, bootstrap: str, since: Marks, topic: str = "command-responses") -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": unique("matrix-watch"), "enable.auto.commit": False}
        )
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, since.get((topic, p), 0)) for p in parts])
        self._seen: dict[str, list[str]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="matrix-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(500, timeout=0.2):
                    self._take(msg)
        finally:
            self._consumer.close()

    def _take(self, msg: Any) -> None:
        if msg.error() or msg.key() is None:
            return
        try:
            message = records.decode(msg.key(), msg.value(), msg.headers()).message
        except records.RecordDecodeError:
            return
        status = pb.CommandStatus.Name(message.status)  # type: ignore[attr-defined]
        with self._cond:
            self._seen.setdefault(message.command_id, []).append(status)  # type: ignore[attr-defined]
            self._cond.notify_all()

    def statuses(self, command_id: str) -> list[str]:
        with self._cond:
            return list(self._seen.get(command_id, ()))

    def has_final(self, command_id: str) -> bool:
        return any(s in FINAL_STATUSES for s in self.statuses(command_id))

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every response); False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

"""Test harness: real processes (monitord, agents, analyzer), a real Kafka broker, record readers.

Nothing here mocks Kafka or gRPC: integration tests start the same entry points an operator runs
and read back what landed in Kafka.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from monitord import records

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KAFKA_SH = REPO / "scripts" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """A fresh agent id, so tests sharing one broker never see each other's records."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- Kafka --------------------------------------------------------------------------------------


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


# -- processes ----------------------------------------------------------------------------------

#: Every process a test started; the autouse fixture in conftest.py stops them after each test.
STARTED: list[Proc] = []


@dataclass
class Proc:
    """A child process whose combined output goes to a log file we can search."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    #: Stopped by the per-test reaper (False for processes a module-scoped fixture owns).
    reap: bool = True

    def start(self) -> Proc:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("JOURNAL_STREAM", None)
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        if self.reap:
            STARTED.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0, count: int = 1) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) occurs ``count`` times in the output."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            matches = list(rx.finditer(self.text()))
            if len(matches) >= count:
                return matches[count - 1]
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before {pattern!r}:\n{self.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {pattern!r} within {timeout}s:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.text()[-3000:]}") from None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_monitord(
    tmp: Path,
    bootstrap: str,
    *,
    name: str = "monitord",
    extra: dict[str, Any] | None = None,
    reap: bool = True,
    port: int | None = None,
    wait_commands: bool = False,
) -> tuple[Proc, str]:
    """Start monitord on a free port; returns (process, "127.0.0.1:PORT") once it serves."""
    port = port or free_port()
    cfg: dict[str, Any] = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "server_id": unique(name),
            "shutdown_grace_seconds": 5,
            "tls": {"mode": "plaintext"},
            "auth": {"require_identity": False},
        },
        "kafka": {"bootstrap_servers": bootstrap, "delivery_timeout_ms": 10000, "linger_ms": 1},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    path = write_yaml(tmp / f"{name}.yaml", cfg)
    proc = Proc(name, [str(BIN / "monitord"), "--config", str(path)], tmp / f"{name}.log", reap=reap).start()
    proc.wait_for(r"Mode: Bidirectional streaming \(no polling\)")
    if wait_commands:  # commands produced before the consumer is assigned would be skipped
        proc.wait_for(r"Commands consumer assigned", timeout=60)
    return proc, f"127.0.0.1:{port}"


def start_agent(
    tmp: Path,
    server: str,
    agent_id: str,
    *,
    iterations: int = 10,
    interval: float = 0.2,
    extra_args: list[str] | None = None,
    config: dict[str, Any] | None = None,
    reap: bool = True,
    wrap: list[str] | None = None,
) -> Proc:
    """Start a mock-mode agent process."""
    cfg = config or {}
    cfg.setdefault("agent", {}).setdefault("state_dir", str(tmp / f"state-{agent_id}"))
    cfg.setdefault("connection", {}).setdefault("tls", {"mode": "plaintext"})
    cfg_path = write_yaml(tmp / f"agent-{agent_id}.yaml", cfg)
    argv = [
        *(wrap or []),
        str(BIN / "monitor-agentd"),
        "--config",
        str(cfg_path),
        "--server",
        server,
        "--agent-id",
        agent_id,
        "--mode",
        "mock",
        "--iterations",
        str(iterations),
        "--interval",
        str(interval),
        *(extra_args or []),
    ]
    return Proc(f"agent {agent_id}", argv, tmp / f"agent-{agent_id}.log", reap=reap).start()


# -- commands -----------------------------------------------------------------------------------

FINAL_STATUSES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "EXPIRED", "INVALID"}


def produce_command(bootstrap: str, agent_id: str, command: str, *args: str, **fields: Any) -> str:
    """Put a CommandMessage (proto3 JSON, as an operator would) on the commands topic; returns its id."""
    from confluent_kafka import Producer

    command_id = fields.pop("command_id", None) or unique("cmd")
    body = {"commandId": command_id, "agentId": agent_id, "command": command, "args": list(args), **fields}
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
    assert producer.flush(10) == 0
    return command_id


def command_responses(
    bootstrap: str, agent_id: str, command_id: str, *, timeout: float = 30.0, settle: float = 1.5
) -> list[Any]:
    """All responses to ``command_id`` (reading from the beginning): waits for a final one, then
    ``settle`` seconds more so duplicates would show."""
    found: list[Any] = []
    for record in read_records(
        bootstrap,
        "command-responses",
        [agent_id],
        expect=10**9,
        timeout=timeout,
        settle=0,
        stop=lambda recs: _has_final(recs, command_id),
        tail=settle,
    ):
        if record.message.command_id == command_id:  # type: ignore[attr-defined]
            found.append(record.message)
    return found


def _has_final(recs: list[records.DecodedRecord], command_id: str) -> bool:
    from monitoring.v1 import monitoring_pb2 as pb

    return any(
        r.message.command_id == command_id and pb.CommandStatus.Name(r.message.status) in FINAL_STATUSES  # type: ignore[attr-defined]
        for r in recs
    )


def statuses(responses: list[Any]) -> list[str]:
    from monitoring.v1 import monitoring_pb2 as pb

    return [pb.CommandStatus.Name(r.status) for r in responses]


# -- fleets and benchmark brokers ------------------------------------------------------------------


def start_fleet(
    tmp: Path, address: str, prefix: str, count: int, iterations: int, interval: float, **opts: Any
) -> Proc:
    """bench/fleet.py: ``count`` real Agent objects in one process (``--opt value`` from ``opts``)."""
    argv = [
        sys.executable,
        str(REPO / "bench/fleet.py"),
        "--server",
        address,
        "--prefix",
        prefix,
        "--count",
        str(count),
        "--iterations",
        str(iterations),
        "--interval",
        str(interval),
        "--state-root",
        str(tmp / f"state-{prefix}"),
    ]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return Proc(f"fleet {prefix}", argv, tmp / f"fleet-{prefix}.log").start()


def bench_broker(tmp: Path) -> tuple[KafkaBroker, bool]:
    """$KAFKA_BOOTSTRAP's cluster, or a private broker started now; (broker, started_here)."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    broker = KafkaBroker(0, None, external) if external else KafkaBroker(free_port(), tmp / "kafka")
    broker.start()
    return broker, not external

"""Command round-trip latency: produce to `commands` -> agent -> final response read from
`command-responses`, for 1, 100 and 1,000 connected agents, and the time to push one command to
every agent at once.

    .venv/bin/python bench/command_latency.py                 # 1,100,1000 agents, 200 samples each
    .venv/bin/python bench/command_latency.py --agents 1,100 --samples 50 --write-doc

Starts its own Kafka broker (scripts/kafka.sh, private port and data dir) unless $KAFKA_BOOTSTRAP
is set, one monitord, and one fleet process (bench/fleet.py: N real Agent objects, one gRPC channel
each, mock collector, 10 s interval). Commands are the built-in `ping`, sent one at a time (the
next after the previous one's final response), so the figures are latency, not queueing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from confluent_kafka import Consumer, Producer, TopicPartition

from harness import bench_broker, start_fleet, start_monitord
from monitord import records
from monitoring.v1 import monitoring_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
WARMUP = 5
FINAL = {pb.SUCCEEDED, pb.FAILED, pb.TIMED_OUT, pb.REJECTED, pb.EXPIRED, pb.INVALID}


class ResponseWatcher:
    """Reads command-responses from its current end; records when each command's final arrived."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "fetch.wait.max.ms": 5}
        )
        meta = self._consumer.list_topics("command-responses", timeout=10)
        parts = [TopicPartition("command-responses", p) for p in meta.topics["command-responses"].partitions]
        for tp in parts:
            tp.offset = self._consumer.get_watermark_offsets(tp, timeout=10)[1]
        self._consumer.assign(parts)
        self.finals: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            first = self._consumer.poll(0.05)
            for msg in [first, *self._consumer.consume(1000, timeout=0)] if first is not None else []:
                if msg.error():
                    continue
                now = time.monotonic()
                message = records.decode(msg.key(), msg.value(), msg.headers()).message
                if isinstance(message, pb.CommandResponseMessage) and message.status in FINAL:
                    with self._cond:
                        self.finals.setdefault(message.command_id, now)
                        self._cond.notify_all()

    def wait(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ids <= self.finals.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self._consumer.close()


def command(agent_id: str) -> tuple[str, bytes]:
    command_id = uuid.uuid4().hex
    msg = pb.CommandMessage(command_id=command_id, agent_id=agent_id, command="ping", ttl_seconds=60)
    return command_id, msg.SerializeToString()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(bootstrap: str, tmp: Path, n_agents: int, samples: int) -> dict[str, Any]:
    server, address = start_monitord(
        tmp, bootstrap, name=f"bench-{n_agents}", extra={"server": {"log_each_record": False}}, wait_commands=True
    )
    prefix = f"bench{n_agents}-{uuid.uuid4().hex[:6]}"
    fleet = start_fleet(tmp, address, prefix, n_agents, iterations=0, interval=10)
    try:
        fleet.wait_for(rf"fleet: {n_agents}/{n_agents} connected", timeout=300)
        ids = [f"{prefix}-{i:04d}" for i in range(n_agents)]
        watcher = ResponseWatcher(bootstrap)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
        headers: list[tuple[str, str | bytes | None]] = [
            ("message-type", b"monitoring.v1.CommandMessage"),
            ("content-type", records.PROTOBUF.encode()),
        ]
        latencies: list[float] = []
        lost = 0
        for i in range(-WARMUP, samples):  # the first commands pay for metadata lookups: not counted
            agent_id = ids[i % n_agents]
            command_id, value = command(agent_id)
            sent = time.monotonic()
            producer.produce("commands", key=agent_id.encode(), value=value, headers=headers)
            producer.flush(10)
            if watcher.wait({command_id}, timeout=10):
                if i >= 0:
                    latencies.append((watcher.finals[command_id] - sent) * 1000)
            else:
                lost += 1
        # Broadcast: one command to every agent at once.
        batch = [command(a) for a in ids]
        sent = time.monotonic()
        for (_, value), agent_id in zip(batch, ids, strict=True):
            producer.produce("commands", key=agent_id.encode(), value=value, headers=headers)
        producer.flush(30)
        all_ids = {c for c, _ in batch}
        complete = watcher.wait(all_ids, timeout=120)
        broadcast = max(watcher.finals.get(c, time.monotonic()) for c in all_ids) - sent
        watcher.close()
        return {
            "agents": n_agents,
            "samples": len(latencies),
            "lost": lost,
            "p50": pct(latencies, 0.50),
            "p95": pct(latencies, 0.95),
            "p99": pct(latencies, 0.99),
            "mean": statistics.fmean(latencies),
            "broadcast_s": broadcast,
            "broadcast_complete": complete,
        }
    finally:
        fleet.stop(30)
        server.stop(30)


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| agents connected | samples | p50 ms | p95 ms | p99 ms | mean ms | push one command to all agents, s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        done = "" if r["broadcast_complete"] else " (incomplete)"
        lines.append(
            f"| {r['agents']:,} | {r['samples']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
            f"{r['mean']:.1f} | {r['broadcast_s']:.2f}{done} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="1,100,1000", help="comma-separated fleet sizes")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--write-doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args()
    sizes = [int(x) for x in args.agents.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    broker, own_broker = bench_broker(tmp)
    try:
        rows = []
        for n in sizes:
            row = measure(broker.bootstrap, tmp, n, args.samples)
            print(render([row]).splitlines()[-1], flush=True)
            rows.append(row)
    finally:
        if own_broker:
            broker.stop()
    table = render(rows)
    print(table)
    if args.write_doc:
        write_doc(table, args)
    return 0


def write_doc(table: str, args: argparse.Namespace) -> None:
    doc = REPO / "docs/benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = "<!-- command-latency:start -->", "<!-- command-latency:end -->"
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    section = (
        f"{start}\n## Command round trip (produce to `commands` → final response on `command-responses`)\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu} cores (Kafka, monitord, the fleet and the load generator "
        f"on the same machine) with:\n\n    .venv/bin/python bench/command_latency.py --agents {args.agents} "
        f"--samples {args.samples} --write-doc\n\n{table}\n\nOne `ping` at a time (latency, not throughput); "
        "the last column sends one `ping` to every connected agent in a burst and waits for all final "
        f"responses.\n{end}"
    )
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

"""Command round-trip latency: produce to `commands` -> agent -> final response read from
`command-responses`, for 1, 100 and 1,000 connected agents, and the time to push one command to
every agent at once -- side by side with two baselines measured in the same run:

* polling (bench/polling.py): the design the push stream replaced. A server holds the commands it
  consumed from `commands` per agent; agents ask for them every 5 s (random phase) and post the
  response, which the server produces to `command-responses`. Same Kafka records, same watcher.
* SaltStack (bench/salt_peer.py, in its own venv from scripts/salt-peer.sh): a local salt-master and
  salt-minions on loopback, `LocalClient.cmd(minion, "test.ping")` round trip.

    .venv/bin/python bench/command_latency.py                 # 1,100,1000 agents, 200 samples each
    .venv/bin/python bench/command_latency.py --agents 1,100 --samples 50 --write-doc
    .venv/bin/python bench/command_latency.py --agents 1 --no-peers    # monitord only

Starts its own Kafka broker (scripts/kafka.sh, private port and data dir) unless $KAFKA_BOOTSTRAP
is set, one monitord, and one fleet process (monitoring_testsupport.fleet: N real Agent objects, one gRPC channel
each, mock collector, 10 s interval). Commands are the built-in `ping`, sent one at a time (the
next after the previous one's final response), so the figures are latency, not queueing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from report import replace_section  # type: ignore[import-not-found]

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import Proc, bench_broker, free_port, start_fleet, start_monitord

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


def command_headers() -> list[tuple[str, str | bytes | None]]:
    return [("message-type", b"monitoring.v1.CommandMessage"), ("content-type", records.PROTOBUF.encode())]


def sender(bootstrap: str) -> tuple[ResponseWatcher, Producer, list[tuple[str, str | bytes | None]]]:
    """What every latency measurement sends with: a watcher on command-responses, an unbatched
    idempotent producer, the command headers."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
    return ResponseWatcher(bootstrap), producer, command_headers()


def measure(bootstrap: str, tmp: Path, n_agents: int, samples: int) -> dict[str, Any]:
    server, address = start_monitord(
        tmp, bootstrap, name=f"bench-{n_agents}", extra={"server": {"log_each_record": False}}, wait_commands=True
    )
    prefix = f"bench{n_agents}-{uuid.uuid4().hex[:6]}"
    fleet = start_fleet(tmp, address, prefix, n_agents, iterations=0, interval=10)
    try:
        fleet.wait_status(rf"fleet: {n_agents}/{n_agents} connected", timeout=300)
        ids = [f"{prefix}-{i:04d}" for i in range(n_agents)]
        watcher, producer, headers = sender(bootstrap)
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


def summary(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"samples": 0, "p50": float("nan"), "p99": float("nan"), "mean": float("nan")}
    return {
        "samples": len(latencies),
        "p50": pct(latencies, 0.50),
        "p99": pct(latencies, 0.99),
        "mean": statistics.fmean(latencies),
    }


def measure_polling(bootstrap: str, tmp: Path, n_agents: int, samples: int, interval: float) -> dict[str, Any]:
    """bench/polling.py: one polling server, N agents asking every ``interval`` s (random phases).

    Samples go out in batches of one command per distinct agent (at most ``samples`` agents, chosen
    at random), after a random pause of 0..interval so the send time is independent of the poll
    phase (with one agent, sending right after the previous response would always wait a full
    interval). Commands to different agents do not wait for each other, the server does no work
    between polls, so a batch gives independent samples; with one agent the batches have size 1.
    """
    port = free_port()
    script = str(REPO / "bench/polling.py")
    name = f"polling{n_agents}"
    server = Proc(
        f"{name}-server",
        [sys.executable, script, "server", "--listen", f"127.0.0.1:{port}", "--bootstrap", bootstrap],
        tmp / f"{name}-server.log",
    ).start()
    agents: Proc | None = None
    try:
        server.wait_for(r"polling-server: listening", timeout=60)
        prefix = f"poll{n_agents}-{uuid.uuid4().hex[:6]}"
        argv = [sys.executable, script, "agents", "--server", f"127.0.0.1:{port}", "--prefix", prefix]
        argv += ["--count", str(n_agents), "--interval", str(interval)]
        agents = Proc(
            f"{name}-agents",
            argv,
            tmp / f"{name}-agents.log",
        ).start()
        agents.wait_for(rf"polling-agents: {n_agents}/{n_agents} polling", timeout=120 + interval)
        ids = [f"{prefix}-{i:04d}" for i in range(n_agents)]
        watcher, producer, headers = sender(bootstrap)
        latencies: list[float] = []
        lost = 0
        warmup = True  # one command first: metadata lookups, not counted
        while len(latencies) + lost < samples:
            time.sleep(random.uniform(0, interval))
            size = 1 if warmup else min(n_agents, samples - len(latencies) - lost)
            batch = [(a, *command(a)) for a in random.sample(ids, size)]
            sent = time.monotonic()
            for agent_id, _, value in batch:
                producer.produce("commands", key=agent_id.encode(), value=value, headers=headers)
            producer.flush(10)
            watcher.wait({c for _, c, _ in batch}, timeout=2 * interval + 10)
            if not warmup:
                for _, command_id, _ in batch:
                    if command_id in watcher.finals:
                        latencies.append((watcher.finals[command_id] - sent) * 1000)
                    else:
                        lost += 1
            warmup = False
        watcher.close()
        return {"agents": n_agents, "lost": lost, **summary(latencies)}
    finally:
        if agents is not None:
            agents.stop(30)
        server.stop(30)


def measure_salt(minions: int, samples: int) -> dict[str, Any]:
    """bench/salt_peer.py with Salt's own venv (created by scripts/salt-peer.sh on first use)."""
    row: dict[str, Any] = {"minions": minions}
    try:
        setup = subprocess.run(
            [str(REPO / "scripts/salt-peer.sh")], capture_output=True, text=True, timeout=900, check=False
        )
        if setup.returncode != 0:
            raise RuntimeError(f"scripts/salt-peer.sh failed: {setup.stderr.strip()[-500:]}")
        python = setup.stdout.strip().splitlines()[-1]
        run = subprocess.run(
            [python, str(REPO / "bench/salt_peer.py"), "--minions", str(minions), "--samples", str(samples)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError(f"bench/salt_peer.py failed: {run.stderr.strip()[-500:]}")
        out = json.loads(run.stdout.strip().splitlines()[-1])
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        print(f"salt peer with {minions} minions: {exc}", file=sys.stderr, flush=True)
        return {**row, "error": str(exc).splitlines()[0][:200], **summary([])}
    row.update({k: v for k, v in out.items() if k != "latencies_ms"})
    row.update(summary(out["latencies_ms"]))
    return row


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


def ms(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not run"
    if row.get("error"):
        return f"failed: {row['error']}"
    lost = f" ({row['lost']} lost)" if row.get("lost") else ""
    return f"{row['p50']:,.1f} / {row['p99']:,.1f}{lost}"


def render_peers(
    rows: list[dict[str, Any]], polling: dict[int, dict[str, Any]], salt: dict[int, dict[str, Any]]
) -> str:
    lines = [
        "| agents | monitord (push) p50 / p99 ms | polling (5 s) p50 / p99 ms | SaltStack test.ping p50 / p99 ms "
        "| Salt minions run | monitord p50 / Salt p50 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r["agents"]
        p, sr = polling.get(n), salt.get(n)
        ok = sr is not None and not sr.get("error") and sr["samples"]
        ratio = f"**{r['p50'] / sr['p50']:.3f}**" if ok else "—"
        minions = f"{sr['minions']:,}" if sr is not None else "—"
        samples = f" ({p['samples']} samples)" if p is not None and not p.get("error") else ""
        lines.append(f"| {n:,} | {ms(r)} | {ms(p)}{samples} | {ms(sr)} | {minions} | {ratio} |")
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]], salt: dict[int, dict[str, Any]]) -> str:
    out = []
    ratios = [r["p50"] / salt[r["agents"]]["p50"] for r in rows if salt.get(r["agents"], {}).get("samples")]
    if ratios:
        worst = max(ratios)
        out.append(
            f"monitord p50 / Salt p50: at most {worst:.3f} (target ≤ 0.2: {'met' if worst <= 0.2 else 'MISSED'})"
        )
    big = [r for r in rows if r["agents"] >= 1000]
    for r in big:
        met = "met" if r["p99"] <= 50 else "MISSED"
        out.append(f"monitord p99 at {r['agents']:,} agents: {r['p99']:.1f} ms (target ≤ 50 ms: {met})")
    return "\n".join(f"- {line}" for line in out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="1,100,1000", help="comma-separated fleet sizes")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--no-peers", action="store_true", help="measure monitord only (no polling, no Salt)")
    p.add_argument("--polling-samples", type=int, default=20, help="samples per fleet size for polling")
    p.add_argument("--polling-interval", type=float, default=5.0, help="poll interval of the baseline, s")
    p.add_argument("--salt-samples", type=int, default=50)
    p.add_argument(
        "--salt-max-minions",
        type=int,
        default=100,
        help="Salt runs min(agents, this) salt-minion processes (~170 MiB RSS each with their job process)",
    )
    p.add_argument("--write-doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args()
    sizes = [int(x) for x in args.agents.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    started = time.monotonic()
    broker, own_broker = bench_broker(tmp)
    rows: list[dict[str, Any]] = []
    polling: dict[int, dict[str, Any]] = {}
    salt: dict[int, dict[str, Any]] = {}
    salt_by_minions: dict[int, dict[str, Any]] = {}
    try:
        for n in sizes:
            row = measure(broker.bootstrap, tmp, n, args.samples)
            print(render([row]).splitlines()[-1], flush=True)
            rows.append(row)
            if args.no_peers:
                continue
            polling[n] = measure_polling(broker.bootstrap, tmp, n, args.polling_samples, args.polling_interval)
            print(f"polling, {n} agents: p50 / p99 ms {ms(polling[n])}", flush=True)
            minions = min(n, args.salt_max_minions)
            if minions not in salt_by_minions:
                salt_by_minions[minions] = measure_salt(minions, args.salt_samples)
            salt[n] = salt_by_minions[minions]
            print(f"salt, {minions} minions: p50 / p99 ms {ms(salt[n])}", flush=True)
    finally:
        if own_broker:
            broker.stop()
    elapsed = time.monotonic() - started
    table = render(rows)
    print(table)
    peers = ""
    if not args.no_peers:
        peers = render_peers(rows, polling, salt) + "\n\n" + verdict(rows, salt)
        print(peers)
    print(f"wall time {elapsed:.0f} s")
    if args.write_doc:
        write_doc(table, peers, salt_by_minions, elapsed, args)
    return 0


def write_doc(
    table: str, peers: str, salt: dict[int, dict[str, Any]], elapsed: float, args: argparse.Namespace
) -> None:
    start, end = "<!-- command-latency:start -->", "<!-- command-latency:end -->"
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    if args.no_peers:
        flags = " --no-peers"
    else:
        flags = (
            f" --polling-samples {args.polling_samples} --polling-interval {args.polling_interval:g}"
            f" --salt-samples {args.salt_samples} --salt-max-minions {args.salt_max_minions}"
        )
    section = (
        f"{start}\n## Command round trip (produce to `commands` → final response on `command-responses`)\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu} cores (Kafka, monitord, the fleet and the load generator "
        f"on the same machine) with:\n\n    .venv/bin/python bench/command_latency.py --agents {args.agents} "
        f"--samples {args.samples}{flags} --write-doc\n\n(wall time {elapsed / 60:.1f} min)\n\n{table}\n\n"
        "One `ping` at a time (latency, not throughput); "
        "the last column sends one `ping` to every connected agent in a burst and waits for all final "
        f"responses.\n{peers_section(peers, salt, args)}{end}"
    )
    replace_section(start, end, section)


def peers_section(peers: str, salt: dict[int, dict[str, Any]], args: argparse.Namespace) -> str:
    if not peers:
        return ""
    runs = []
    for minions, r in sorted(salt.items()):
        if r.get("error"):
            runs.append(f"{minions:,} minion(s): failed ({r['error']})")
        else:
            runs.append(
                f"{minions:,} minion(s): Salt {r.get('salt')}, {r['samples']} samples, all minions answering "
                f"after {r.get('start_s', 0):.0f} s, RSS master {r.get('rss_mib_master', 0):,.0f} MiB, "
                f"minions {r.get('rss_mib_minions', 0):,.0f} MiB in all "
                f"({r.get('rss_mib_minions', 0) / max(1, minions):,.0f} MiB each), `test.ping` to all at once "
                f"{r.get('broadcast_s', 0):.2f} s"
            )
    return (
        "\n### Side by side with the design it replaced and with SaltStack (same run)\n\n"
        f"{peers}\n\n"
        f"- **polling ({args.polling_interval:g} s)**: bench/polling.py, the pull design the push stream replaced: "
        "a grpc.aio server consumes `commands` (same records) and holds them per agent; N agents in one "
        f"process (one channel each) call `Poll` every {args.polling_interval:g} s with a random phase, "
        "answer the `ping` and call `Respond`; the server produces the final response to "
        "`command-responses` as monitord does (idempotent, acks=all). Measured the same way (produce → "
        "final response read from Kafka), one command per distinct agent per batch, each batch after a random "
        "pause so send times are independent of poll phases. Expected p50 ≈ interval / 2; with "
        f"{args.polling_samples} samples, p99 is their maximum.\n"
        "- **SaltStack**: bench/salt_peer.py in Salt's own venv (scripts/salt-peer.sh, cached outside the repo): "
        "one salt-master and `min(agents, "
        f"{args.salt_max_minions})` salt-minion processes on 127.0.0.1 (ZeroMQ, default settings, auto_accept), "
        "`LocalClient(mopts=...).cmd(minion, 'test.ping')` one call at a time, round-robin over the minions — "
        "job publish, minion execution and the return through the master's event bus. "
        "Each minion is a full Python process (plus one forked per job), so a fleet size above "
        f"{args.salt_max_minions:,} is compared with the {args.salt_max_minions:,}-minion run (the "
        "'Salt minions run' column). Runs: " + "; ".join(runs) + ".\n\n"
        "Targets: monitord p50 / Salt p50 ≤ 0.2; monitord p99 at 1,000 agents ≤ 50 ms.\n"
    )


if __name__ == "__main__":
    sys.exit(main())

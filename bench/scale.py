"""M2 scale: concurrent agent streams held by one monitord (metrics and heartbeats every 10 s),
the server's RSS per stream, and command round-trip latency at that load.

    .venv/bin/python bench/scale.py --agents 10000 --fleets 4

Agents run in --fleets processes (bench/fleet.py: real Agent objects, one channel each); monitord
listens on all of 127/8 and each fleet dials another 127.0.0.x, so 10,000 streams do not exhaust
one source/destination pair's ports. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from command_latency import ResponseWatcher, command, pct  # type: ignore[import-not-found]
from confluent_kafka import Producer

from harness import bench_broker, free_port, start_fleet, start_monitord


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--fleets", type=int, default=4)
    p.add_argument("--samples", type=int, default=200)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    broker, own_broker = bench_broker(tmp)
    try:
        port = free_port()
        server, _ = start_monitord(
            tmp,
            broker.bootstrap,
            port=port,
            wait_commands=True,
            extra={"server": {"listen": f"0.0.0.0:{port}", "log_each_record": False}},
        )
        assert server.popen is not None
        time.sleep(2)
        base = rss_kib(server.popen.pid)
        per_fleet = args.agents // args.fleets
        prefixes = [f"scale{i}-{uuid.uuid4().hex[:4]}" for i in range(args.fleets)]
        fleets = [
            start_fleet(tmp, f"127.0.0.{1 + i}:{port}", prefixes[i], per_fleet, iterations=0, interval=10)
            for i in range(args.fleets)
        ]
        started = time.monotonic()
        for fleet in fleets:
            fleet.wait_for(rf"fleet: {per_fleet}/{per_fleet} connected", timeout=1200)
        connect_seconds = time.monotonic() - started
        time.sleep(15)  # at least one metrics + heartbeat round from everyone
        rss = rss_kib(server.popen.pid)
        watcher = ResponseWatcher(broker.bootstrap)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        latencies = []
        for i in range(args.samples):
            agent_id = f"{prefixes[i % args.fleets]}-{(i * 7919) % per_fleet:04d}"
            command_id, value = command(agent_id)
            sent = time.monotonic()
            producer.produce(
                "commands",
                key=agent_id.encode(),
                value=value,
                headers=[("message-type", b"monitoring.v1.CommandMessage")],
            )
            producer.flush(10)
            if watcher.wait({command_id}, timeout=10):
                latencies.append((watcher.finals[command_id] - sent) * 1000)
        watcher.close()
        total = per_fleet * args.fleets
        result = {
            "agents": total,
            "connect_seconds": connect_seconds,
            "server_rss_mib": rss / 1024,
            "server_rss_base_mib": base / 1024,
            "kib_per_stream": (rss - base) / total,
            "command_p50_ms": pct(latencies, 0.5),
            "command_p99_ms": pct(latencies, 0.99),
            "command_samples": len(latencies),
        }
        for fleet in fleets:
            fleet.stop(120)
        server.stop(60)
        print(json.dumps(result))
    finally:
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

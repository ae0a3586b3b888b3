"""M5 reconnect storm: monitord restarted (SIGTERM, then a new process on the same port) while it
holds N agents -> time until all are back, peak connection attempts per second, server errors.

    .venv/bin/python bench/storm.py --agents 1000
    .venv/bin/python bench/storm.py --agents 10000     # 4 fleet processes, 127.0.0.1-4

The agents are real Agent objects (monitoring_testsupport.fleet), so their own backoff, jitter and redirect
handling are what is measured; up to 2,500 per fleet process. Prints one JSON line (used by bench/run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from ingest import process_cpu  # type: ignore[import-not-found]
from scale import raise_fd_limit  # type: ignore[import-not-found]

from monitoring_testsupport import bench_broker, free_port, start_fleet, start_monitord


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--per-fleet", type=int, default=2500, help="agents per fleet process")
    args = p.parse_args()
    raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    broker, own_broker = bench_broker(tmp)
    n = args.agents
    try:
        port = free_port()
        quiet = {"server": {"listen": f"0.0.0.0:{port}", "log_each_record": False}}
        server, _ = start_monitord(tmp, broker.bootstrap, port=port, extra=quiet)
        sizes = [min(args.per_fleet, n - i) for i in range(0, n, args.per_fleet)]
        prefix = f"storm-{uuid.uuid4().hex[:6]}"
        fleets = [
            start_fleet(
                tmp,
                f"127.0.0.{1 + i % 4}:{port}",
                f"{prefix}{i}",
                size,
                iterations=0,
                interval=10,
                attempts_file=tmp / f"attempts-{i}.json",
            )
            for i, size in enumerate(sizes)
        ]
        for fleet, size in zip(fleets, sizes, strict=True):
            fleet.wait_status(rf"fleet: {size}/{size} connected", timeout=900)
        pids = [f.popen.pid for f in fleets if f.popen is not None]
        restart, fleet_cpu0 = time.time(), sum(map(process_cpu, pids))
        server.stop(120)
        server2, _ = start_monitord(tmp, broker.bootstrap, name="monitord-new", port=port, extra=quiet)
        server2.wait_agents(n, timeout=600)
        back = time.time() - restart
        fleet_cpu = (sum(map(process_cpu, pids)) - fleet_cpu0) / back
        assert server2.popen is not None
        server_cpu = process_cpu(server2.popen.pid) / back
        for fleet in fleets:
            fleet.stop(300)
        times = [
            t - restart
            for i in range(len(sizes))
            for ts in json.loads((tmp / f"attempts-{i}.json").read_text()).values()
            for t in ts
            if t >= restart
        ]
        per_second = Counter(int(t) for t in times)
        errors = sum(1 for line in server2.text().splitlines() if " ERROR " in line or "Traceback" in line)
        server2.stop()
        print(
            json.dumps(
                {
                    "agents": n,
                    "all_back_seconds": back,
                    "attempts": len(times),
                    "peak_attempts_per_second": max(per_second.values(), default=0),
                    "histogram": dict(sorted(per_second.items())),
                    "server_errors": errors,
                    "server_cpu": server_cpu,
                    "fleet_cpu": fleet_cpu,
                }
            )
        )
    finally:
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

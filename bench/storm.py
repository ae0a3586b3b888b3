"""M5 reconnect storm: monitord restarted (SIGTERM, then a new process on the same port) while it
holds N agents -> time until all are back, peak connection attempts per second, server errors.

    .venv/bin/python bench/storm.py --agents 1000

Prints one JSON line (used by bench/run).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import bench_broker, free_port, start_fleet, start_monitord


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    broker, own_broker = bench_broker(tmp)
    n = args.agents
    try:
        port = free_port()
        quiet = {"server": {"log_each_record": False}}
        server, address = start_monitord(tmp, broker.bootstrap, port=port, extra=quiet)
        attempts_file = tmp / "attempts.json"
        fleet = start_fleet(
            tmp, address, f"storm-{uuid.uuid4().hex[:6]}", n, iterations=0, interval=10, attempts_file=attempts_file
        )
        fleet.wait_for(rf"fleet: {n}/{n} connected", timeout=600)
        restart = time.time()
        server.stop(120)
        server2, _ = start_monitord(tmp, broker.bootstrap, name="monitord-new", port=port, extra=quiet)
        server2.wait_for(rf"\({n} agents connected\)", timeout=300)
        back = time.time() - restart
        fleet.stop(120)
        times = [t - restart for ts in json.loads(attempts_file.read_text()).values() for t in ts if t >= restart]
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
                }
            )
        )
    finally:
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

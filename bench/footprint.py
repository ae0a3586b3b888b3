"""M4 agent footprint: CPU (% of one core) and PSS of monitor-agentd in real mode at a given
collection interval, over a measurement window, against a real monitord and Kafka.

    .venv/bin/python bench/footprint.py --interval 1 --seconds 120

Prints one JSON line (used by bench/run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import BIN, Proc, bench_broker, start_monitord, write_yaml


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    broker, own_broker = bench_broker(tmp)
    try:
        server, address = start_monitord(tmp, broker.bootstrap, extra={"server": {"log_each_record": False}})
        cfg = write_yaml(
            tmp / "agent.yaml",
            {
                "agent": {"state_dir": str(tmp / "state")},
                "connection": {"tls": {"mode": "plaintext"}},
                "logging": {"level": "warning"},
            },
        )
        agent = Proc(
            "agent",
            [
                str(BIN / "monitor-agentd"),
                "--config",
                str(cfg),
                "--server",
                address,
                "--mode",
                "real",
                "--interval",
                str(args.interval),
            ],
            tmp / "agent.log",
        ).start()
        time.sleep(max(5.0, 3 * args.interval))  # past start-up
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        pss = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            pss.append(pss_kib(agent.pid))
        cpu = (cpu_seconds(agent.pid) - c0) / (time.monotonic() - t0)
        agent.stop()
        server.stop()
        print(
            json.dumps(
                {
                    "interval": args.interval,
                    "seconds": args.seconds,
                    "cpu_percent": 100 * cpu,
                    "pss_mib_max": max(pss) / 1024,
                    "pss_mib_mean": sum(pss) / len(pss) / 1024,
                }
            )
        )
    finally:
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""M4 agent footprint: CPU (% of one core) and PSS of monitor-agentd in real mode at a given
collection interval, over a measurement window, against a real monitord and Kafka; side by side
with Prometheus node_exporter (scripts/tools.sh node_exporter, default collectors) scraped at the
same interval over the same window. The scraper is a thread of this process: its CPU is not counted.

    .venv/bin/python bench/footprint.py --interval 1 --seconds 120

Prints one JSON line (used by bench/run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ingest import process_cpu  # type: ignore[import-not-found]

from monitoring_testsupport import BIN, Proc, bench_broker, free_port, start_monitord, write_yaml

REPO = Path(__file__).resolve().parents[1]


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def module_version(binary: str) -> str:
    """The Go module version recorded in the binary by go install ("unknown" without Go)."""
    try:
        out = subprocess.run(["go", "version", "-m", binary], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["mod"] and len(parts) >= 3:
            return parts[2]
    return "unknown"


class Scraper(threading.Thread):
    """GET url every ``interval`` seconds on a fixed schedule (a late scrape skips missed slots)."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.done = threading.Event()
        self.scrapes = self.errors = 0
        self.cpu = 0.0  # this thread's own CPU seconds (reported, not counted)

    def scrape(self) -> None:
        with urllib.request.urlopen(self.url, timeout=max(5.0, self.interval)) as r:
            r.read()

    def run(self) -> None:
        c0, due = time.thread_time(), time.monotonic()
        while not self.done.is_set():
            try:
                self.scrape()
                self.scrapes += 1
            except OSError:
                self.errors += 1
            self.cpu = time.thread_time() - c0
            due += self.interval
            while due < time.monotonic():
                due += self.interval
            self.done.wait(due - time.monotonic())


def start_node_exporter(tmp: Path, interval: float) -> tuple[Proc, Scraper, str]:
    binary = subprocess.run(
        [str(REPO / "scripts/tools.sh"), "node_exporter"], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    proc = Proc(
        "node_exporter",
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        tmp / "node_exporter.log",
    ).start()
    scraper = Scraper(f"http://127.0.0.1:{port}/metrics", interval)
    deadline = time.monotonic() + 30
    while True:
        try:
            scraper.scrape()
            break
        except OSError:
            if (proc.popen is not None and proc.popen.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(f"node_exporter not serving /metrics:\n{proc.text()[-3000:]}") from None
            time.sleep(0.1)
    scraper.start()
    return proc, scraper, module_version(binary)


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    broker, own_broker = bench_broker(tmp)
    exporter: Proc | None = None
    scraper: Scraper | None = None
    try:
        exporter, scraper, exporter_version = start_node_exporter(tmp, args.interval)
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
        # Both processes over the same window, so noise on the machine hits both alike.
        s0, e0 = scraper.scrapes, scraper.errors
        sc0, c0, n0, t0 = scraper.cpu, process_cpu(agent.pid), process_cpu(exporter.pid), time.monotonic()
        pss, npss = [], []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            pss.append(pss_kib(agent.pid))
            npss.append(pss_kib(exporter.pid))
        elapsed = time.monotonic() - t0
        cpu = (process_cpu(agent.pid) - c0) / elapsed
        ncpu = (process_cpu(exporter.pid) - n0) / elapsed
        scrapes, errors, scraper_cpu = scraper.scrapes - s0, scraper.errors - e0, scraper.cpu - sc0
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
                    "node_exporter_version": exporter_version,
                    "node_exporter_cpu_percent": 100 * ncpu,
                    "node_exporter_pss_mib_max": max(npss) / 1024,
                    "node_exporter_pss_mib_mean": sum(npss) / len(npss) / 1024,
                    "node_exporter_scrapes": scrapes,
                    "node_exporter_scrape_errors": errors,
                    "scraper_cpu_percent_excluded": 100 * scraper_cpu / elapsed,
                    "cpu_ratio": ratio(cpu, ncpu),
                    "pss_ratio": ratio(max(pss), max(npss)),
                }
            )
        )
    finally:
        if scraper is not None:
            scraper.done.set()
        if exporter is not None:
            exporter.stop()
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

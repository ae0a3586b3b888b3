"""``monitor-analyzer`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from types import FrameType

from monitord import __version__
from monitord.analysis.consumer import Analyzer, AnalyzerOptions
from monitord.config import DEFAULT_PATH, MonitordConfig
from monitoring_common import logsetup
from monitoring_common.cli_support import load_or_exit
from monitoring_common.exits import EX_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monitor-analyzer",
        description="Analysis consumer: prints every metrics record and command response from Kafka, "
        "with a periodic per-agent summary (duplicates dropped by agent id + sequence).",
        epilog="Exit status: 0 ok, 78 invalid configuration.",
    )
    p.add_argument(
        "--config", metavar="PATH", help=f"monitord configuration for Kafka settings (default {DEFAULT_PATH})"
    )
    p.add_argument("--kafka-bootstrap", metavar="SERVERS", help="override kafka.bootstrap_servers")
    p.add_argument("--group", default="monitor-analyzer", help="consumer group id (default monitor-analyzer)")
    p.add_argument("--from-beginning", action="store_true", help="a new group starts at the oldest records")
    p.add_argument("--summary-interval", type=float, default=30.0, metavar="SECONDS", help="per-agent summary period")
    p.add_argument("--agent", metavar="ID", help="only this agent")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--log-level", choices=logsetup.LEVELS, default="info")
    p.add_argument("--version", action="version", version=f"monitor-analyzer {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = load_or_exit("monitor-analyzer", args.config, DEFAULT_PATH, MonitordConfig)
    kafka = cfg.kafka
    if args.kafka_bootstrap:
        kafka = dataclasses.replace(kafka, bootstrap_servers=args.kafka_bootstrap)
    logsetup.configure(args.log_level)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    opts = AnalyzerOptions(
        group_id=args.group,
        from_beginning=args.from_beginning,
        summary_interval=args.summary_interval,
        json_output=args.json,
        agent_filter=args.agent,
    )
    Analyzer(kafka, opts, sys.stdout).run(stop)
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())

"""``monitor-analyzer`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
import uuid
from types import FrameType

from monitord import __version__
from monitord.analysis.consumer import Analyzer, AnalyzerOptions
from monitord.analysis.evaluator import RuleEvaluator
from monitord.analysis.rule_actions import RuleActions
from monitord.analysis.rules import RulesConfig, load_rules
from monitord.command_records import DEFAULT_ENCODING, CommandProducer
from monitord.config import DEFAULT_PATH, KafkaSection, MonitordConfig
from monitord.kafka_clients import KafkaClients, kafka_client_settings
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common import logsetup
from monitoring_common.cli_support import config_error_exit, load_config_file, load_or_exit
from monitoring_common.config_loader import ConfigError, InvalidField
from monitoring_common.exits import EX_CONFIG, EX_OK

PROG = "monitor-analyzer"
#: The ``server-id`` header of commands the rules send.
SOURCE = "monitor-analyzer"

log = logging.getLogger("monitord.analysis")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monitor-analyzer",
        description="Analysis consumer: prints every metrics record and command response from Kafka, "
        "with a periodic per-agent summary (duplicates dropped by agent id + sequence).",
        epilog="Exit status: 0 ok, 78 invalid configuration (monitord.yaml, --rules file or a flag).",
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
    p.add_argument(
        "--rules",
        metavar="PATH",
        help="threshold rules that send commands to agents (see etc/monitord/analyzer.yaml)",
    )
    p.add_argument("--check-config", action="store_true", help="validate the configuration and rules, exit 0 or 78")
    p.add_argument("--log-level", choices=logsetup.LEVELS, default="info")
    p.add_argument("--version", action="version", version=f"monitor-analyzer {__version__}")
    return p


def rules_or_exit(path: str) -> RulesConfig:
    """Load the --rules file or exit 78 with one line naming file, key and line."""
    try:
        return load_rules(path)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def rule_actions(kafka: KafkaSection, rules: RulesConfig) -> RuleActions:
    """The rules wired to a command producer on the commands topic."""

    def on_result(command: pb.CommandMessage, error: str | None) -> None:
        if error is not None:
            log.warning(
                "Command %s for agent '%s' not stored in Kafka: %s", command.command_id, command.agent_id, error
            )

    producer = KafkaClients.real(kafka, PROG, logger=logging.getLogger("monitord.analysis.librdkafka")).producer()
    sink = CommandProducer(
        producer, kafka.topics.commands, source=SOURCE, encoding=DEFAULT_ENCODING, on_result=on_result
    )
    evaluator = RuleEvaluator(rules.rules, clock=time.time, max_sample_age=rules.max_sample_age_seconds)
    return RuleActions(evaluator, sink, clock=time.time, new_id=lambda: uuid.uuid4().hex)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = load_or_exit(PROG, lambda: load_config_file(args.config, DEFAULT_PATH, MonitordConfig))
    load_or_exit(PROG, lambda: kafka_client_settings(cfg.kafka))  # the secrets file must be readable
    kafka = cfg.kafka
    if args.kafka_bootstrap:
        try:
            kafka = dataclasses.replace(kafka, bootstrap_servers=args.kafka_bootstrap)
        except InvalidField as exc:
            config_error_exit(PROG, ConfigError("command line", None, "--kafka-bootstrap", exc.problem))
    rules = rules_or_exit(args.rules) if args.rules else None
    if args.check_config:
        count = f", {len(rules.rules)} rules in {args.rules}" if rules is not None else ""
        print(f"{PROG}: configuration OK ({args.config or DEFAULT_PATH}{count})")
        return EX_OK
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
    actions = None
    if rules is not None:
        actions = rule_actions(kafka, rules)
        log.info("%d rules loaded from %s; commands go to %s", len(rules.rules), args.rules, kafka.topics.commands)
    Analyzer(kafka, opts, sys.stdout, rules=actions).run(stop)
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())

"""``monitorctl`` command line: options, configuration, exit statuses.

Kafka settings come from monitord.yaml's ``kafka`` section (``--config``, default
/etc/monitord/monitord.yaml, which may be absent), ``--kafka-bootstrap`` overrides the brokers.

Exit statuses:

====  ============================================================================
0     success; ``send --wait``: the command SUCCEEDED
1     ``send --wait``: FAILED (the command exited non-zero)
3     ``send --wait``: the agent disconnected after DELIVERED, before the final response
      (outcome not known yet; the agent writes it when it reconnects, FAILED if it restarted)
124   ``send --wait``: TIMED_OUT (killed by the agent at its timeout)
126   ``send --wait``: REJECTED by the agent (not allowed, bad arguments, busy)
75    ``send --wait``: EXPIRED (not delivered before its TTL)
65    ``send --wait``: INVALID (malformed command, refused by monitord)
69    ``send --wait``: no final response within --wait-timeout; any subcommand:
      Kafka unreachable, a topic missing, or a record not confirmed
64    usage error (unknown option, bad value)
78    invalid configuration (file or --kafka-bootstrap); one line names file, key, line
130   interrupted (Ctrl-C) -- except ``tail``, for which Ctrl-C is the normal end (0)
====  ============================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import NoReturn

from monitord import __version__
from monitord.config import DEFAULT_PATH, KafkaSection, MonitordConfig
from monitord.ctl.agents import run_agents
from monitord.ctl.output import Output
from monitord.ctl.send import SendRequest, run_send
from monitord.ctl.tail import run_tail
from monitord.errors import KafkaUnavailable
from monitord.kafka_clients import KafkaClients, kafka_client_settings
from monitoring_common import logsetup
from monitoring_common.cli_support import config_error_exit, load_config_file, load_or_exit
from monitoring_common.config_loader import ConfigError, InvalidField
from monitoring_common.exits import EX_OK, EX_UNAVAILABLE, EX_USAGE

PROG = "monitorctl"
#: librdkafka's log lines (e.g. one per failed connection attempt) go here; shown with --log-level debug.
LIBRDKAFKA_LOGGER = "monitord.ctl.librdkafka"
EX_INTERRUPTED = 130
UINT32_MAX = 2**32 - 1

EXIT_TABLE = """\
exit status:
  0    success (send --wait: the command SUCCEEDED)
  1    send --wait: FAILED, the command exited non-zero
  3    send --wait: the agent disconnected after DELIVERED, before the final
       response (written when it reconnects; FAILED if it restarted)
  124  send --wait: TIMED_OUT, killed by the agent at its timeout
  126  send --wait: REJECTED by the agent (not allowed, bad arguments, busy)
  75   send --wait: EXPIRED, not delivered before its --ttl
  65   send --wait: INVALID command, refused by monitord
  69   send --wait: no final response within --wait-timeout;
       any subcommand: Kafka unavailable, topic missing, record not confirmed
  64   usage error
  78   invalid configuration (file or --kafka-bootstrap)
  130  interrupted (for tail, Ctrl-C is the normal end: 0)"""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _count(text: str, *, minimum: int, maximum: int = UINT32_MAX) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not minimum <= value <= maximum:
        raise argparse.ArgumentTypeError(f"must be between {minimum} and {maximum}, got {value}")
    return value


def _seconds(text: str) -> int:
    return _count(text, minimum=0)


def _positive_int(text: str) -> int:
    return _count(text, minimum=1, maximum=sys.maxsize)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_common(p: argparse.ArgumentParser, default: object) -> None:
    # Accepted before and after the subcommand; the subcommand's copies default to SUPPRESS so
    # they do not overwrite a value given before it.
    p.add_argument(
        "--config", metavar="PATH", default=default, help=f"monitord configuration (default {DEFAULT_PATH}, optional)"
    )
    p.add_argument("--kafka-bootstrap", metavar="SERVERS", default=default, help="override kafka.bootstrap_servers")
    p.add_argument(
        "--json", action="store_true", default=default, help="one JSON object per line (protobuf as proto3 JSON)"
    )
    p.add_argument(
        "--log-level", choices=logsetup.LEVELS, default=default, help="diagnostics on stderr (default warning)"
    )


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Operator CLI: send commands to agents, list agents, tail metrics -- all through Kafka.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p, None)
    p.set_defaults(json=False, log_level="warning")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = _Parser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    send = sub.add_parser(
        "send",
        parents=[common],
        help="send a command to an agent",
        description="Put a command for AGENT on the commands topic and print its id. Options go before "
        "AGENT: everything after COMMAND is passed to the command verbatim, even if it starts "
        "with '-' (a '--' right after COMMAND is dropped).",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument(
        "--timeout", type=_seconds, default=0, metavar="SECONDS", help="execution timeout (0: agent default)"
    )
    send.add_argument("--ttl", type=_seconds, default=0, metavar="SECONDS", help="expire if not delivered within")
    send.add_argument(
        "--wait",
        action="store_true",
        help="wait for the final response; exit with its status (3: the agent disconnected first)",
    )
    send.add_argument(
        "--wait-timeout", type=_positive_float, default=60.0, metavar="SECONDS", help="with --wait (default 60)"
    )
    send.add_argument("--requested-by", metavar="NAME", help="who asks (default monitorctl:$USER)")
    send.add_argument("--encoding", choices=("protobuf", "json"), default="json", help="record value format (json)")
    send.add_argument("agent", metavar="AGENT", help="agent id")
    send.add_argument("command", metavar="COMMAND", help="command name, e.g. ping, info, disk-report")
    send.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="command arguments")

    agents = sub.add_parser(
        "agents",
        parents=[common],
        help="list agents",
        description="List agents from the agent-status topic: connected and stale ones, with --all also "
        "disconnected ones.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    agents.add_argument("--all", action="store_true", help="include disconnected agents")

    tail = sub.add_parser(
        "tail",
        parents=[common],
        help="follow metrics records",
        description="Print metrics records as they arrive, until Ctrl-C or --count records.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("--agent", metavar="ID", help="only this agent")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest records")
    tail.add_argument("--count", type=_positive_int, metavar="N", help="stop after N records")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check ``argv``; usage errors exit 64."""
    p = parser()
    args = p.parse_args(argv)
    if args.subcommand == "send":
        if args.args[:1] == ["--"]:  # some Python versions keep the separator in REMAINDER
            args.args = args.args[1:]
        if not args.agent.strip():
            p.error("AGENT must not be empty")
        if not args.command.strip():
            p.error("COMMAND must not be empty")
    return args


def kafka_settings(args: argparse.Namespace) -> KafkaSection:
    """The kafka section of the configuration with ``--kafka-bootstrap`` applied; exits 78 if invalid."""
    kafka = load_or_exit(PROG, lambda: load_config_file(args.config, DEFAULT_PATH, MonitordConfig)).kafka
    load_or_exit(PROG, lambda: kafka_client_settings(kafka))  # the secrets file must be readable
    if args.kafka_bootstrap is not None:
        try:
            kafka = dataclasses.replace(kafka, bootstrap_servers=args.kafka_bootstrap)
        except InvalidField as exc:
            config_error_exit(PROG, ConfigError("command line", None, "--kafka-bootstrap", exc.problem))
    return kafka


def default_requester() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{PROG}:{user}"


def run(
    args: argparse.Namespace,
    clients: KafkaClients,
    out: Output,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> int:
    """Run the parsed subcommand; Kafka trouble becomes 69."""
    try:
        if args.subcommand == "send":
            request = SendRequest(
                agent_id=args.agent,
                command=args.command,
                args=tuple(args.args),
                timeout_seconds=args.timeout,
                ttl_seconds=args.ttl,
                requested_by=args.requested_by or default_requester(),
                encoding=args.encoding,
                wait=args.wait,
                wait_timeout=args.wait_timeout,
            )
            return run_send(request, clients, out, command_id=new_id(), now=wall(), clock=clock)
        if args.subcommand == "agents":
            return run_agents(clients, out, include_all=args.all, wall=wall, clock=clock)
        return run_tail(clients, out, agent_id=args.agent, from_beginning=args.from_beginning, count=args.count)
    except KafkaUnavailable as exc:
        out.note(f"{PROG}: Kafka unavailable: {exc}")
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return EX_OK if args.subcommand == "tail" else EX_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kafka = kafka_settings(args)
    logsetup.configure(args.log_level)
    librdkafka = logging.getLogger(LIBRDKAFKA_LOGGER)
    if args.log_level != "debug":
        # The error that matters ends up in the one-line "Kafka unavailable: ..." message.
        librdkafka.setLevel(logging.CRITICAL)
    out = Output(sys.stdout, sys.stderr, json_mode=args.json)
    try:
        return run(args, KafkaClients.real(kafka, PROG, logger=librdkafka), out)
    except BrokenPipeError:
        # Output piped into e.g. head(1), which exited: not an error. Silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK


if __name__ == "__main__":
    sys.exit(main())

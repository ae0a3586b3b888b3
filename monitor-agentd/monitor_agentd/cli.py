"""``monitor-agentd`` command line: the seed's flags, config loading, exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

from monitor_agentd import __version__
from monitor_agentd.app import Agent
from monitor_agentd.config import DEFAULT_PATH, AgentConfig
from monitor_agentd.errors import CredentialsError, StateDirError, UnsafeStateDir
from monitoring_common import logsetup, runner
from monitoring_common.cli_support import load_config_file, load_or_exit, override_error
from monitoring_common.config_loader import ConfigError, InvalidField
from monitoring_common.exits import EX_CANTCREAT, EX_CONFIG, EX_OK, EX_UNAVAILABLE

log = logging.getLogger("monitor_agentd")


def parser() -> argparse.ArgumentParser:
    """The command-line parser (also the source of the man page's OPTIONS)."""
    p = argparse.ArgumentParser(
        prog="monitor-agentd",
        description="Monitoring agent: collects host metrics and streams them to monitord over one gRPC stream.",
        epilog="Exit status: 0 ok, 73 state directory unusable or in use, 75 stopped with metrics unacknowledged "
        "(--iterations), 78 invalid configuration or unsafe state directory (not the agent's own, writable "
        "by others, or a planted link in it).",
    )
    p.add_argument("--config", metavar="PATH", help=f"configuration file (default {DEFAULT_PATH}, optional)")
    p.add_argument(
        "--server",
        metavar="HOST:PORT",
        action="append",
        help="monitord address; repeat for fallbacks (overrides agent.servers)",
    )
    p.add_argument("--agent-id", metavar="ID", help="agent id (overrides agent.id; default: the host name)")
    p.add_argument("--mode", choices=("real", "mock"), help="collector (overrides collection.mode; default real)")
    p.add_argument(
        "--interval", metavar="SECONDS", type=float, help="collection interval (overrides collection.interval_seconds)"
    )
    p.add_argument(
        "--iterations",
        metavar="N",
        type=int,
        help="stop after N collections, 0 = forever (overrides collection.iterations)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="overrides agent.state_dir")
    p.add_argument("--log-level", choices=logsetup.LEVELS, help="override logging.level")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext connection, no certificate or token (local demos and tests only; warned)",
    )
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit (0 or 78)")
    p.add_argument("--version", action="version", version=f"monitor-agentd {__version__}")
    return p


FLAGS = {"servers": "--server", "id": "--agent-id", "state_dir": "--state-dir"}


def _require_min(flag: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ConfigError("command line", None, flag, f"must be >= {minimum}, got {value}")


def load_config(args: argparse.Namespace) -> AgentConfig:
    """The file's config with command-line overrides applied; raises ConfigError (start and reload)."""
    cfg = load_config_file(args.config, DEFAULT_PATH, AgentConfig)
    agent, collection, logging_ = cfg.agent, cfg.collection, cfg.logging
    try:
        if args.server:
            agent = dataclasses.replace(agent, servers=tuple(args.server))
        if args.agent_id is not None:
            agent = dataclasses.replace(agent, id=args.agent_id)
        if args.state_dir is not None:
            agent = dataclasses.replace(agent, state_dir=args.state_dir)
    except InvalidField as exc:
        raise override_error(exc, FLAGS) from None
    if args.interval is not None:
        _require_min("--interval", args.interval, 0.05)
        collection = dataclasses.replace(collection, interval_seconds=args.interval)
    if args.iterations is not None:
        _require_min("--iterations", args.iterations, 0)
        collection = dataclasses.replace(collection, iterations=args.iterations)
    if args.mode is not None:
        collection = dataclasses.replace(collection, mode=args.mode)
    if args.log_level is not None:
        logging_ = dataclasses.replace(logging_, level=args.log_level)
    connection = cfg.connection
    if args.insecure:
        connection = dataclasses.replace(connection, tls=dataclasses.replace(connection.tls, mode="plaintext"))
    return dataclasses.replace(cfg, agent=agent, collection=collection, connection=connection, logging=logging_)


def main(argv: list[str] | None = None) -> int:
    """Run monitor-agentd with ``argv`` (default: the command line); returns the exit status."""
    args = parser().parse_args(argv)
    cfg = load_or_exit("monitor-agentd", lambda: load_config(args))
    if args.check_config:
        print(f"monitor-agentd: configuration OK ({args.config or DEFAULT_PATH})")
        return EX_OK
    logsetup.configure(cfg.logging.level)

    async def body(stop: asyncio.Event, reload: asyncio.Event) -> int:
        try:
            agent = Agent(cfg)
        except (UnsafeStateDir, CredentialsError) as exc:  # fixing them takes the operator: no restart
            log.error("monitor-agentd cannot start: %s", exc)
            return EX_CONFIG
        except StateDirError as exc:
            log.error("monitor-agentd cannot start: %s", exc)
            return EX_CANTCREAT
        async with agent:
            try:
                agent.start_metrics()
            except OSError as exc:
                log.error("monitor-agentd cannot start: %s", exc)
                return EX_UNAVAILABLE
            return await agent.run(stop, reload, lambda: load_config(args))

    return runner.run(body)


if __name__ == "__main__":
    sys.exit(main())

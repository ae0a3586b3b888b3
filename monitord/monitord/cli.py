"""``monitord`` command line: options, config loading, exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

from monitord import __version__
from monitord.app import Monitord
from monitord.auth import warn_if_world_readable
from monitord.config import DEFAULT_PATH, MonitordConfig
from monitord.errors import StartupError
from monitord.kafka_clients import kafka_client_settings
from monitoring_common import logsetup, runner
from monitoring_common.cli_support import load_config_file, load_or_exit, override_error
from monitoring_common.config_loader import InvalidField
from monitoring_common.exits import EX_OK, EX_UNAVAILABLE

log = logging.getLogger("monitord")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monitord",
        description="Central monitoring server: agents stream metrics over gRPC, monitord forwards them to Kafka.",
        epilog="Exit status: 0 ok, 69 could not start (e.g. address in use), 78 invalid configuration.",
    )
    p.add_argument("--config", metavar="PATH", help=f"configuration file (default {DEFAULT_PATH}, optional)")
    p.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    p.add_argument("--kafka-bootstrap", metavar="SERVERS", help="override kafka.bootstrap_servers")
    p.add_argument("--server-id", metavar="NAME", help="override server.server_id")
    p.add_argument("--log-level", choices=logsetup.LEVELS, help="override logging.level")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext and anonymous agents allowed (local demos and tests only; warned at start)",
    )
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit (0 or 78)")
    p.add_argument("--version", action="version", version=f"monitord {__version__}")
    return p


FLAGS = {"listen": "--listen", "server_id": "--server-id", "bootstrap_servers": "--kafka-bootstrap"}


def load_config(args: argparse.Namespace) -> MonitordConfig:
    """The file's config with command-line overrides applied; raises ConfigError (start and reload)."""
    cfg = load_config_file(args.config, DEFAULT_PATH, MonitordConfig)
    try:
        server, kafka, logging_ = cfg.server, cfg.kafka, cfg.logging
        if args.listen is not None:
            server = dataclasses.replace(server, listen=args.listen)
        if args.server_id is not None:
            server = dataclasses.replace(server, server_id=args.server_id)
        if args.kafka_bootstrap is not None:
            kafka = dataclasses.replace(kafka, bootstrap_servers=args.kafka_bootstrap)
        if args.log_level is not None:
            logging_ = dataclasses.replace(logging_, level=args.log_level)
        if args.insecure:
            server = dataclasses.replace(
                server,
                tls=dataclasses.replace(server.tls, mode="plaintext"),
                auth=dataclasses.replace(server.auth, require_identity=False),
            )
    except InvalidField as exc:
        raise override_error(exc, FLAGS) from None
    return dataclasses.replace(cfg, server=server, kafka=kafka, logging=logging_)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = load_or_exit("monitord", lambda: load_config(args))
    load_or_exit("monitord", lambda: kafka_client_settings(cfg.kafka))  # the secrets file must be readable
    if args.check_config:
        print(f"monitord: configuration OK ({args.config or DEFAULT_PATH})")
        return EX_OK
    logsetup.configure(cfg.logging.level)
    if any(word in key for key in (*cfg.kafka.client, *cfg.kafka.producer) for word in ("password", "secret")):
        warn_if_world_readable(args.config or DEFAULT_PATH, "Configuration file holding Kafka secrets")

    async def body(stop: asyncio.Event, reload: asyncio.Event) -> int:
        try:
            async with Monitord(cfg) as server:
                await server.serve(stop, reload, lambda: load_config(args))
        except StartupError as exc:
            log.error("monitord cannot start: %s", exc)
            return EX_UNAVAILABLE
        return EX_OK

    return runner.run(body)


if __name__ == "__main__":
    sys.exit(main())

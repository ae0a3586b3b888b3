"""What a SIGHUP reload may change in monitord's configuration, and what only a restart can."""

from __future__ import annotations

import dataclasses
import logging

from monitord.config import MonitordConfig

log = logging.getLogger(__name__)


def effective_config(old: MonitordConfig, new: MonitordConfig) -> MonitordConfig:
    """``new`` with the restart-only settings (listen address, identity, TLS, Kafka, the commands
    consumer) kept from ``old``; each such setting that changed is logged as a warning."""
    fixed = {
        "server.listen": (old.server.listen, new.server.listen),
        "server.server_id": (old.server.server_id, new.server.server_id),
        "server.tls": (old.server.tls, new.server.tls),
        "kafka": (old.kafka, new.kafka),
        "commands.enabled": (old.commands.enabled, new.commands.enabled),
        "commands.consumer_group_prefix": (old.commands.consumer_group_prefix, new.commands.consumer_group_prefix),
        "commands.fetch_wait_max_ms": (old.commands.fetch_wait_max_ms, new.commands.fetch_wait_max_ms),
        "commands.duty_session_timeout_ms": (
            old.commands.duty_session_timeout_ms,
            new.commands.duty_session_timeout_ms,
        ),
    }
    for key, (was, now) in fixed.items():
        if was != now:
            log.warning("Reload: %s changed; that takes effect only after a restart", key)
    return dataclasses.replace(
        new,
        server=dataclasses.replace(
            new.server, listen=old.server.listen, server_id=old.server.server_id, tls=old.server.tls
        ),
        kafka=old.kafka,
        commands=dataclasses.replace(
            new.commands,
            enabled=old.commands.enabled,
            consumer_group_prefix=old.commands.consumer_group_prefix,
            fetch_wait_max_ms=old.commands.fetch_wait_max_ms,
            duty_session_timeout_ms=old.commands.duty_session_timeout_ms,
        ),
    )

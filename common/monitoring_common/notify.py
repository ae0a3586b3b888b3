"""systemd integration through sd_notify (the ``sdnotify`` package): readiness, status, watchdog.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. The watchdog ping is sent only
while the daemon reports itself healthy: a wedged event loop sends nothing (the supervising task
never runs), and a dead delivery path or stuck collector makes ``health()`` false -- either way
systemd sees the pings stop and restarts the service (``Result=watchdog``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sdnotify

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often STATUS= is refreshed when no watchdog is configured.
STATUS_PERIOD = 5.0


class Notifier:
    """Sends sd_notify messages when running under systemd (``Type=notify``)."""

    def __init__(self, environ: Mapping[str, str] | None = None, transport: Any = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._transport = transport or (sdnotify.SystemdNotifier() if self.enabled else None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        #: Seconds between watchdog pings (half of WatchdogSec), or None without a watchdog.
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self.last_status = ""

    def _send(self, text: str) -> None:
        if self._transport is not None:
            self._transport.notify(text)

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        if text != self.last_status:
            self.last_status = text
            self._send(f"STATUS={text}")

    def extend_timeout(self, seconds: float) -> None:
        """A slow start or stop step: ask systemd for ``seconds`` more before it gives up."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str = "") -> None:
        self._send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))


async def supervise(notifier: Notifier, health: Callable[[], bool], status: Callable[[], str]) -> None:
    """Keep STATUS= current and ping the watchdog while ``health()`` holds (runs until cancelled)."""
    period = min(notifier.watchdog_interval or STATUS_PERIOD, STATUS_PERIOD)
    was_healthy = True
    while True:
        notifier.status(status())
        healthy = health()
        if healthy:
            if notifier.watchdog_interval is not None:
                notifier.watchdog()
        elif was_healthy:
            log.error("Unhealthy: withholding the watchdog ping (%s)", status())
        was_healthy = healthy
        await asyncio.sleep(period)


def reload_config(
    notifier: Notifier, load: Callable[[], T], apply: Callable[[T], None], status: Callable[[], str]
) -> None:
    """SIGHUP: RELOADING=1, validate with ``load`` (the start-up loader), ``apply`` it -- or log why
    not and keep the running configuration -- then READY=1 again."""
    from monitoring_common.config_loader import ConfigError

    notifier.reloading()
    try:
        new = load()
    except ConfigError as exc:
        log.error("Reload rejected, the running configuration stays in force: %s", exc)
    else:
        apply(new)
    notifier.ready(status())

"""Staying connected: the reconnect loop over the configured servers, with backoff.

One :class:`~monitor_agentd.stream.Link` serves one connection at a time; when it fails the
:class:`Connector` waits a (jittered, growing) backoff delay and tries the next server in the list.
The loop decides from the error's type and fields (``LinkFailed.immediate``), never its text.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence, Sized

from monitor_agentd.backoff import Backoff, BackoffPolicy
from monitor_agentd.config import ConnectionSection
from monitor_agentd.errors import LinkFailed
from monitor_agentd.stream import Link

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Connector:
    """Runs the link against the servers in turn until it closes gracefully."""

    def __init__(
        self,
        link: Link,
        servers: Sequence[str],
        cfg: ConnectionSection,
        spool: Sized,
        *,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.link = link
        self.backoff = backoff or Backoff(BackoffPolicy.from_config(cfg))
        self._servers = tuple(servers)
        self._cfg = cfg
        self._spool = spool
        self._sleep = sleep
        #: What the connection is doing now, in words (STATUS=, while not streaming).
        self.connection_state = "starting"
        #: Connections that failed or ended without a goodbye.
        self.connection_failures = 0
        #: Delay before the next connection attempt (0 while connecting or connected).
        self.backoff_delay = 0.0

    def reconfigure(self, servers: Sequence[str], cfg: ConnectionSection) -> None:
        """Reload: the server list and backoff apply to the next attempt, channel options to the next connection."""
        self._servers = tuple(servers)
        self._cfg = cfg
        self.backoff.policy = BackoffPolicy.from_config(cfg)
        self.link.reconfigure(cfg)

    @property
    def connected(self) -> bool:
        """True while a stream is open."""
        return self.link.connected.is_set()

    @property
    def backoff_attempt(self) -> int:
        """Failed attempts since the last healthy stream."""
        return self.backoff.attempt

    def describe(self) -> str:
        """The connection for STATUS=: the server streamed to, or what is happening instead."""
        if self.connected:
            return f"streaming to {self.link.server_id or '?'}"
        return self.connection_state

    async def run(self) -> None:
        """Connect, reconnect after every failure; returns after the link closed gracefully."""
        for attempt in itertools.count():
            servers = self._servers  # re-read: a reload may change the list
            address = servers[attempt % len(servers)]
            self.connection_state = f"connecting to {address}"
            try:
                await self.link.run(address)
                return
            except LinkFailed as exc:
                reason, immediate = str(exc), exc.immediate
            # Reset the backoff only after a stream that stayed up: no saw-tooth reconnect hammering.
            if self.link.last_stream_seconds >= self._cfg.healthy_after_seconds or immediate:
                self.backoff.reset()
            delay = 0.0 if immediate else self.backoff.next_delay()
            self.connection_failures += 1
            self.backoff_delay = delay
            self.connection_state = f"backing off {delay:.1f}s after: {reason}"
            log.warning(
                "✗ Connection to %s failed: %s; reconnecting in %.1fs (%d metrics spooled)",
                address,
                reason,
                delay,
                len(self._spool),
            )
            await self._sleep(delay)
            self.backoff_delay = 0.0

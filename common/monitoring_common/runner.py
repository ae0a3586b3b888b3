"""Run a daemon's async main with signal handling in the uvicorn manner.

Signal handlers only set events; the daemon's lifecycle object sees them and shuts down within its
grace period (SIGTERM/SIGINT) or reloads its configuration (SIGHUP). A second SIGINT/SIGTERM while
shutting down exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: Exit status when a second signal forces an immediate exit (128 + SIGINT, as shells report it).
EX_FORCED = 130


def run(body: Callable[[asyncio.Event, asyncio.Event], Awaitable[int]]) -> int:
    """``asyncio.run`` ``body(stop, reload)``: ``stop`` is set by the first SIGTERM or SIGINT,
    ``reload`` by each SIGHUP (the body clears it after reloading)."""

    async def main() -> int:
        stop = asyncio.Event()
        reload = asyncio.Event()
        loop = asyncio.get_running_loop()
        received = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal received
            received += 1
            if received == 1:
                log.info("Received %s, shutting down", sig.name)
                stop.set()
            else:
                log.warning("Received %s again, exiting immediately", sig.name)
                os._exit(EX_FORCED)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        return await body(stop, reload)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EX_FORCED

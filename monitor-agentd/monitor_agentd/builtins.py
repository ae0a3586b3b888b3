"""The built-in commands: ``ping``, ``collect``, ``set-interval`` and ``info``.

They need only the collection schedule (to collect now, to change the interval) and a function
that describes the agent (``info``); :class:`monitor_agentd.commands.CommandRunner` calls them
through its narrow ``BuiltinCommands`` protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from monitor_agentd.config import BUILTIN_COMMANDS
from monitor_agentd.errors import CommandRefused

#: The range ``set-interval`` accepts, in seconds (collection.interval_seconds has the same bounds).
MIN_INTERVAL_SECONDS = 0.05
MAX_INTERVAL_SECONDS = 86_400


class Collection(Protocol):
    """What the built-ins drive: the collection schedule."""

    def collect_now(self) -> int:
        """Collect one record now; returns its sequence number."""
        ...

    def set_interval(self, seconds: float) -> float:
        """Change the collection interval; returns the previous one."""
        ...


def interval_argument(args: Sequence[str]) -> float:
    """The seconds ``set-interval`` was asked for, or :class:`CommandRefused` saying why not."""
    try:
        (value,) = args
        seconds = float(value)
    except ValueError:
        raise CommandRefused("set-interval expects one number of seconds") from None
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise CommandRefused("set-interval: seconds must be between 0.05 and 86400")
    return seconds


class Builtins:
    """Checks and runs the built-in commands against the schedule and the ``info`` description."""

    def __init__(self, collection: Collection, info: Callable[[], dict[str, Any]]) -> None:
        self._collection = collection
        self._info = info

    def check(self, name: str, args: Sequence[str]) -> None:
        """Raise :class:`CommandRefused` unless ``args`` suit built-in ``name``."""
        if name not in BUILTIN_COMMANDS:
            raise CommandRefused(f"unknown command {name!r} (not configured on this agent)")
        if name == "set-interval":
            interval_argument(args)
        elif args:
            raise CommandRefused(f"{name} takes no arguments")

    def run(self, name: str, args: Sequence[str]) -> str:
        """Run built-in ``name`` (arguments already checked); returns what goes to stdout."""
        if name == "ping":
            return "pong"
        if name == "collect":
            return f"collected metrics #{self._collection.collect_now()}"
        if name == "set-interval":
            new = interval_argument(args)
            old = self._collection.set_interval(new)
            return f"interval {new:g}s (was {old:g}s)"
        return json.dumps(self._info(), sort_keys=True)

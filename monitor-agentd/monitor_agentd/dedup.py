"""Command ids already accepted, so a command redelivered after a reconnect (or an agent restart)
never runs twice: a bounded set, oldest forgotten first. The command journal (:mod:`journal`)
persists it; :func:`read_seen_file` reads the ``commands-seen`` file older agents kept instead."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

REMEMBER = 10_000


class SeenCommands:
    """A bounded set of command ids, in the order they were accepted."""

    def __init__(self, remember: int = REMEMBER) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def __contains__(self, command_id: str) -> bool:
        return command_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, command_id: str) -> None:
        """Remember ``command_id``, forgetting the oldest beyond the bound."""
        self._ids[command_id] = None
        while len(self._ids) > self._remember:
            self._ids.popitem(last=False)


def read_seen_file(path: Path) -> list[str]:
    """The ids in a ``commands-seen`` file (one a line) of an agent before the journal; [] if none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("Cannot read %s: %s", path, exc)
        return []
    return [line for line in text.splitlines() if line]

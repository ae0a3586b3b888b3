"""Command ids already accepted, so a command redelivered after a reconnect (or an agent restart)
never runs twice. Kept in memory (bounded) and appended to ``<state_dir>/commands-seen``."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)

REMEMBER = 10_000


class SeenCommands:
    """A bounded, persistent set of command ids."""

    def __init__(self, path: Path | None, remember: int = REMEMBER) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._path = path
        if path is not None and path.exists():
            for line in path.read_text(errors="replace").splitlines()[-remember:]:
                if line:
                    self._ids[line] = None
            self._compact()

    def __contains__(self, command_id: str) -> bool:
        return command_id in self._ids

    def add(self, command_id: str) -> None:
        """Remember ``command_id`` (in memory, bounded, and appended to the file)."""
        self._ids[command_id] = None
        while len(self._ids) > self._remember:
            self._ids.popitem(last=False)
        if self._path is not None:
            try:
                with self._path.open("a") as f:
                    f.write(command_id + "\n")
            except OSError as exc:
                log.warning("Cannot record command id in %s: %s", self._path, exc)

    def _compact(self) -> None:
        # Rewrite the file with only what is remembered, so it does not grow forever.
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text("".join(i + "\n" for i in self._ids))
            tmp.replace(self._path)
        except OSError as exc:
            log.warning("Cannot compact %s: %s", self._path, exc)

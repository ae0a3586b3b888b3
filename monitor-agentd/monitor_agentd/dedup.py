"""Command ids already accepted, so a command redelivered after a reconnect (or an agent restart)
never runs twice: a bounded set, oldest forgotten first. The command journal (:mod:`journal`)
persists it; :func:`read_seen_file` reads the ``commands-seen`` file older agents kept instead --
never through a link, at most its last :data:`LEGACY_MAX_BYTES`, and only lines that are valid ids."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from monitor_agentd.errors import StateDirError
from monitor_agentd.statefiles import SafeDir, parent_of
from monitoring_common.untrusted import is_id, shown

log = logging.getLogger(__name__)

REMEMBER = 10_000
#: The most of a ``commands-seen`` file read: its newest :data:`REMEMBER` ids of 128 characters.
LEGACY_MAX_BYTES = REMEMBER * 129


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


def read_seen_file(path: Path, directory: SafeDir | None = None) -> list[str]:
    """The valid ids in a ``commands-seen`` file (one a line) of an agent before the journal, from
    its last :data:`LEGACY_MAX_BYTES`; [] if none. ``directory`` is ``path``'s, already open."""
    try:
        with parent_of(path, directory) as parent:
            data = _tail(parent, path.name)
    except FileNotFoundError:
        return []
    except (OSError, StateDirError) as exc:  # a link is not followed, a directory not read
        log.warning("Cannot read %s: %s", path, exc)
        return []
    lines = [line for line in data.decode("ascii", "replace").splitlines() if line]
    ids = [line for line in lines if is_id(line)]
    if len(ids) < len(lines):
        bad = next(line for line in lines if not is_id(line))
        log.warning("Ignoring %d invalid command ids in %s (first: %s)", len(lines) - len(ids), path, shown(bad))
    return ids


def _tail(directory: SafeDir, name: str) -> bytes:
    fd = directory.open_file(name, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - LEGACY_MAX_BYTES)
        data = os.pread(fd, LEGACY_MAX_BYTES, start)
    finally:
        os.close(fd)
    return data.partition(b"\n")[2] if start else data  # the first line was cut

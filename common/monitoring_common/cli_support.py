"""Helpers every entry point shares: turning config errors into exit 78 with one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, TypeVar

from monitoring_common.config_loader import ConfigError, load_file
from monitoring_common.exits import EX_CONFIG

T = TypeVar("T")


def load_or_exit(prog: str, path: str | None, default_path: str, schema: type[T]) -> T:
    """Load ``path`` (or the default path, which may be absent) or exit 78 naming file, key and line."""
    try:
        if path is None:
            return load_file(default_path, schema, missing_ok=not Path(default_path).exists())
        return load_file(path, schema)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def config_error_exit(prog: str, source: str, key: str, problem: str) -> NoReturn:
    """Exit 78 for an invalid command-line override, in the same one-line form as file errors."""
    print(f"{prog}: configuration error: {ConfigError(source, None, key, problem)}", file=sys.stderr)
    raise SystemExit(EX_CONFIG)

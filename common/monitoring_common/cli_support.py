"""Helpers every entry point shares: one way to load config (start, --check-config, SIGHUP reload)
and one way to turn a config error into exit 78 with one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from monitoring_common.config_loader import ConfigError, InvalidField, load_file
from monitoring_common.exits import EX_CONFIG

T = TypeVar("T")


def load_config_file(path: str | None, default_path: str, schema: type[T]) -> T:
    """Load ``path``, or the default path (which may be absent: defaults); raises ConfigError."""
    if path is None:
        return load_file(default_path, schema, missing_ok=not Path(default_path).exists())
    return load_file(path, schema)


def override_error(exc: InvalidField, flags: dict[str, str]) -> ConfigError:
    """A bad command-line override, named by its flag, in the same form as file errors."""
    return ConfigError("command line", None, flags.get(exc.field, exc.field), exc.problem)


def load_or_exit(prog: str, load: Callable[[], T]) -> T:
    """``load()`` or exit 78 with ``prog: configuration error: FILE:LINE: KEY: PROBLEM``."""
    try:
        return load()
    except ConfigError as exc:
        config_error_exit(prog, exc)


def config_error_exit(prog: str, exc: ConfigError) -> NoReturn:
    print(f"{prog}: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(EX_CONFIG)

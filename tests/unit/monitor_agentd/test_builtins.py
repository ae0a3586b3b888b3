"""The built-in commands, against a fake schedule."""

from __future__ import annotations

import json

import pytest

from monitor_agentd.builtins import Builtins, interval_argument
from monitor_agentd.config import BUILTIN_COMMANDS, RESERVED_COMMAND_NAMES, SHELL_COMMAND
from monitor_agentd.errors import CommandRefused


class Collection:
    def __init__(self) -> None:
        self.interval = 10.0

    def collect_now(self) -> int:
        return 7

    def set_interval(self, seconds: float) -> float:
        old, self.interval = self.interval, seconds
        return old


def test_names_are_defined_once() -> None:
    assert set(BUILTIN_COMMANDS) == {"ping", "collect", "set-interval", "info"}
    assert (*BUILTIN_COMMANDS, SHELL_COMMAND) == RESERVED_COMMAND_NAMES


def test_each_builtin() -> None:
    collection = Collection()
    builtins = Builtins(collection, lambda: {"b": 2, "a": 1})
    assert builtins.run("ping", []) == "pong"
    assert builtins.run("collect", []) == "collected metrics #7"
    assert builtins.run("set-interval", ["0.5"]) == "interval 0.5s (was 10s)" and collection.interval == 0.5
    assert builtins.run("info", []) == json.dumps({"a": 1, "b": 2}) == '{"a": 1, "b": 2}'


def test_check_refuses_bad_arguments() -> None:
    builtins = Builtins(Collection(), dict)
    for name in BUILTIN_COMMANDS:
        builtins.check(name, ["1"] if name == "set-interval" else [])
    with pytest.raises(CommandRefused, match="info takes no arguments"):
        builtins.check("info", ["x"])
    with pytest.raises(CommandRefused, match="unknown command 'shell'"):
        builtins.check("shell", [])


@pytest.mark.parametrize("args", [[], ["1", "2"], ["x"], ["0.01"], ["86401"]])
def test_interval_argument_bounds(args: list[str]) -> None:
    with pytest.raises(CommandRefused):
        interval_argument(args)


def test_interval_argument_accepts_the_bounds() -> None:
    assert interval_argument(["0.05"]) == 0.05 and interval_argument(["86400"]) == 86_400

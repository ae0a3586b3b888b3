"""agent.yaml's cross-field checks and bounds."""

from __future__ import annotations

import socket
from types import MappingProxyType

import pytest

from monitor_agentd.config import (
    RESERVED_COMMAND_NAMES,
    AgentConfig,
    AgentSection,
    CommandSpec,
    CommandsSection,
    ParamSpec,
)
from monitoring_common.config_loader import ConfigError, InvalidField, load_text
from monitoring_common.transport import MIN_CLIENT_PING_INTERVAL_SECONDS


def test_effective_id_defaults_to_the_host_name() -> None:
    assert AgentSection().effective_id == socket.gethostname()
    assert AgentSection(id="a1").effective_id == "a1"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("agent:\n  servers: [nohost]\n", r"agent.servers: expected HOST:PORT, got 'nohost'"),
        ("agent:\n  servers: ['a:0']\n", r"agent.servers: expected HOST:PORT"),
        ("connection:\n  keepalive_seconds: 5\n", rf"must be >= {MIN_CLIENT_PING_INTERVAL_SECONDS}"),
        ("collection:\n  interval_seconds: 0.01\n", r"collection.interval_seconds: must be >= 0.05"),
        ("commands:\n  definitions:\n    ping: {argv: [/bin/true]}\n", r"'ping' is a built-in command name"),
    ],
)
def test_invalid_files_name_the_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_text(text, AgentConfig, "agent.yaml")


def test_keepalive_minimum_is_the_servers_ping_tolerance() -> None:
    text = f"connection:\n  keepalive_seconds: {MIN_CLIENT_PING_INTERVAL_SECONDS}\n"
    assert load_text(text, AgentConfig).connection.keepalive_seconds == MIN_CLIENT_PING_INTERVAL_SECONDS


@pytest.mark.parametrize("name", RESERVED_COMMAND_NAMES)
def test_definitions_may_not_shadow_reserved_names(name: str) -> None:
    with pytest.raises(InvalidField, match="is a built-in command name"):
        CommandsSection(definitions=MappingProxyType({name: CommandSpec(argv=("/bin/true",))}))


@pytest.mark.parametrize(
    ("argv", "params", "problem"),
    [
        ((), (), "must name a program"),
        (("true",), (), "the program must be an absolute path, got 'true'"),
        (("/bin/echo", "{a}", "{a}"), (ParamSpec(name="a"), ParamSpec(name="a")), "parameter names must be unique"),
        (("/bin/echo", "{a}"), (), "undeclared placeholder"),
        (("/bin/echo",), (ParamSpec(name="a"),), "parameter(s) not used in argv: a"),
    ],
)
def test_command_spec_checks(argv: tuple[str, ...], params: tuple[ParamSpec, ...], problem: str) -> None:
    with pytest.raises(InvalidField) as info:
        CommandSpec(argv=argv, params=params)
    assert problem in str(info.value)


def test_param_pattern_must_compile() -> None:
    with pytest.raises(InvalidField, match="invalid regular expression"):
        ParamSpec(name="a", pattern="[")


def test_the_command_bounds_default_to_monitords() -> None:
    from monitord.config import CommandsSection as ServerCommands

    agent, server = CommandsSection(), ServerCommands()
    for key in ("max_name_chars", "max_requested_by_chars", "max_args", "max_arg_bytes"):
        assert getattr(agent, key) == getattr(server, key), key


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("commands:\n  max_name_chars: 0\n", r"commands.max_name_chars: must be >= 1"),
        ("commands:\n  max_arg_bytes: 2000000\n", r"commands.max_arg_bytes: must be <= 1048576"),
        ("connection:\n  max_receive_message_bytes: 1000\n", r"connection.max_receive_message_bytes: must be >= 65536"),
    ],
)
def test_the_bounds_on_server_input_are_bounded_too(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_text(text, AgentConfig, "agent.yaml")


def test_the_bounds_on_server_input_load_from_the_file() -> None:
    text = "commands:\n  max_args: 3\n  max_requested_by_chars: 32\nconnection:\n  max_receive_message_bytes: 131072\n"
    cfg = load_text(text, AgentConfig)
    assert (cfg.commands.max_args, cfg.commands.max_requested_by_chars) == (3, 32)
    assert cfg.connection.max_receive_message_bytes == 131_072

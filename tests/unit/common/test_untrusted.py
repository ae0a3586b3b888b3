"""Untrusted text is escaped and bounded before it reaches a log line."""

from __future__ import annotations

import logging

import pytest

from monitoring_common import untrusted
from monitoring_common.untrusted import LogBudget, is_id, shown


def test_control_characters_and_non_ascii_are_escaped() -> None:
    assert shown("web-1") == "web-1"
    assert shown("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert shown("héllo") == "h\\xe9llo"
    assert shown(b"\xff\xfeid") == "\\ufffd\\ufffdid"
    assert shown(None) == ""


def test_long_values_are_cut_and_counted() -> None:
    assert shown("x" * 1_000_000, limit=10) == "xxxxxxxxxx…(+999990 chars)"
    assert len(shown("y" * 5000)) < 130


def test_ids() -> None:
    assert is_id("web-1") and is_id("a" * 128) and is_id("host.example:7@x_y")
    assert not any(is_id(v) for v in ("", "-x", "a" * 129, "web-1\n", "a b", "é", "a/b"))


def test_refused_input_is_logged_within_a_budget(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    budget = LogBudget(lines=2, seconds=10, clock=lambda: now[0])
    logger = logging.getLogger("test.budget")
    with caplog.at_level(logging.WARNING):
        for n in range(50):
            budget.log(logger, logging.WARNING, "refused %d", n)
        now[0] = 10.0
        budget.log(logger, logging.WARNING, "refused %d", 50)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused 1",
        "refused 50 (48 more like it suppressed)",
    ]


def test_both_ends_take_their_command_bounds_defaults_from_here() -> None:
    from monitor_agentd.config import CommandsSection as AgentCommands
    from monitord.config import CommandsSection as ServerCommands

    expected = {
        "max_name_chars": untrusted.DEFAULT_MAX_COMMAND_NAME_CHARS,
        "max_requested_by_chars": untrusted.DEFAULT_MAX_REQUESTED_BY_CHARS,
        "max_args": untrusted.DEFAULT_MAX_COMMAND_ARGS,
        "max_arg_bytes": untrusted.DEFAULT_MAX_COMMAND_ARG_BYTES,
    }
    assert expected == {"max_name_chars": 128, "max_requested_by_chars": 256, "max_args": 64, "max_arg_bytes": 4096}
    for section in (AgentCommands(), ServerCommands()):
        assert {key: getattr(section, key) for key in expected} == expected

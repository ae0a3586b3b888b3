"""Untrusted text is escaped and bounded before it reaches a log line."""

from __future__ import annotations

from monitoring_common.untrusted import shown


def test_control_characters_and_non_ascii_are_escaped() -> None:
    assert shown("web-1") == "web-1"
    assert shown("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert shown("héllo") == "h\\xe9llo"
    assert shown(b"\xff\xfeid") == "\\ufffd\\ufffdid"
    assert shown(None) == ""


def test_long_values_are_cut_and_counted() -> None:
    assert shown("x" * 1_000_000, limit=10) == "xxxxxxxxxx…(+999990 chars)"
    assert len(shown("y" * 5000)) < 130

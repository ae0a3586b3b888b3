"""Running one program: exit status, capped output, timeout killing the whole process group."""

from __future__ import annotations

import asyncio

import pytest

from monitor_agentd import executor
from monitor_agentd.executor import HeadTail


def run(argv: list[str], *, timeout: float = 5.0, output_limit: int = 1024) -> executor.Outcome:
    return asyncio.run(executor.run(argv, timeout=timeout, output_limit=output_limit, kill_grace=0.2))


def test_exit_status_and_both_streams() -> None:
    outcome = run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert outcome.exit_code == 3 and not outcome.timed_out
    assert outcome.stdout.text() == "out\n" and outcome.stderr.text() == "err\n"
    assert outcome.finished_at >= outcome.started_at


def test_minimal_environment_and_root_directory() -> None:
    outcome = run(["/bin/sh", "-c", 'echo "$PATH|$HOME|$(pwd)|${USER:-unset}"'])
    assert outcome.stdout.text() == f"{executor.MINIMAL_ENV['PATH']}|/|/|unset\n"


def test_timeout_kills_the_process_group() -> None:
    # The child's sleep holds stdout open: only killing the whole group lets the run finish.
    outcome = run(["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=0.2)
    assert outcome.timed_out and outcome.exit_code < 0
    assert outcome.finished_at - outcome.started_at < 5


def test_output_beyond_the_limit_keeps_head_and_tail() -> None:
    outcome = run(["/bin/sh", "-c", "printf 'a%.0s' $(seq 1 100); printf 'z%.0s' $(seq 1 100)"], output_limit=64)
    text = outcome.stdout.text()
    assert outcome.stdout.truncated and outcome.stdout.total == 200
    assert text.startswith("a" * 32) and text.endswith("z" * 32) and "[... 136 bytes truncated ...]" in text


def test_a_program_that_cannot_start_raises_oserror() -> None:
    with pytest.raises(OSError):
        run(["/nonexistent/program"])


def test_head_tail_within_the_limit_is_verbatim() -> None:
    sink = HeadTail(8)
    sink.feed(b"abc")
    sink.feed(b"defgh")
    assert not sink.truncated and sink.text() == "abcdefgh"
    sink.feed(b"ij")
    assert sink.truncated and "[... 2 bytes truncated ...]" in sink.text()
    assert sink.text().startswith("abcd") and sink.text().endswith("ghij")

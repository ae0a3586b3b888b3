"""monitoring_common.logsetup: journald priority prefixes."""

from __future__ import annotations

import io
import logging

from monitoring_common.logsetup import JournalFormatter


def test_journal_formatter_prefixes_every_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter("%(message)s"))
    log = logging.getLogger("test.journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("two\nlines")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["<4>two", "<4>lines"]
    assert all(line.startswith("<3>") for line in lines[2:]) and any("ValueError: boom" in line for line in lines)

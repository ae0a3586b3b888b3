"""Server counters: the records-per-second figure of the status line, and agents' drop reports."""

from __future__ import annotations

from monitord.stats import RateMeter, ServerStats


def test_rate_is_measured_over_at_least_a_second_and_held_in_between() -> None:
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    assert meter.rate(0) == 0.0
    now[0] = 100.5
    assert meter.rate(50) == 0.0  # under a second: the previous figure
    now[0] = 102.0
    assert meter.rate(200) == 100.0
    now[0] = 102.4
    assert meter.rate(260) == 100.0
    now[0] = 103.0
    assert meter.rate(300) == 100.0


def test_agent_drop_reports_keep_the_highest() -> None:
    stats = ServerStats()
    stats.note_agent_drops("a", 3)
    stats.note_agent_drops("a", 1)
    stats.note_response("SUCCEEDED")
    stats.note_response("SUCCEEDED")
    assert stats.agent_drops == {"a": 3}
    assert stats.responses_by_status == {"SUCCEEDED": 2}

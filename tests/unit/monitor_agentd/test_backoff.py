"""Reconnect delays: capped exponential backoff with full jitter."""

from __future__ import annotations

from monitor_agentd.backoff import Backoff, BackoffPolicy
from monitor_agentd.config import ConnectionSection


def test_backoff_grows_caps_and_jitters() -> None:
    top = Backoff(BackoffPolicy(initial=1, multiplier=2, maximum=10, jitter=1.0), rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    low = Backoff(BackoffPolicy(initial=1, multiplier=2, maximum=10, jitter=1.0), rand=lambda: 0.0)
    assert low.next_delay() == 0.0  # full jitter reaches zero
    half = Backoff(BackoffPolicy(initial=4, multiplier=2, maximum=60, jitter=0.5), rand=lambda: 0.0)
    assert half.next_delay() == 2.0
    top.reset()
    assert top.next_delay() == 1


def test_policy_from_config() -> None:
    cfg = ConnectionSection(backoff_initial_seconds=0.5, backoff_multiplier=3, backoff_max_seconds=9, backoff_jitter=0)
    backoff = Backoff(BackoffPolicy.from_config(cfg), rand=lambda: 0.7)
    assert [backoff.next_delay() for _ in range(4)] == [0.5, 1.5, 4.5, 9]
    assert backoff.attempt == 4

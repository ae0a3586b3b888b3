"""Reconnect delays: capped exponential backoff with (full) jitter.

With ``jitter=1`` a delay is uniform in ``[0, min(max, initial * multiplier**attempt)]`` -- the "full
jitter" scheme, which spreads a fleet's reconnects after a server restart instead of having every
agent hammer the server at the same instants.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from monitor_agentd.config import ConnectionSection


@dataclass(frozen=True)
class BackoffPolicy:
    """Delay ``initial * multiplier**attempt``, capped at ``maximum``; ``jitter`` of it randomised."""

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 60.0
    jitter: float = 1.0

    @classmethod
    def from_config(cls, c: ConnectionSection) -> BackoffPolicy:
        """The policy agent.yaml's ``connection.backoff_*`` keys describe."""
        return cls(c.backoff_initial_seconds, c.backoff_multiplier, c.backoff_max_seconds, c.backoff_jitter)


class Backoff:
    """Successive delays of one reconnect sequence; ``reset()`` once a connection proved healthy."""

    def __init__(self, policy: BackoffPolicy, rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._rand = rand
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count this attempt)."""
        p = self.policy
        ceiling = min(p.maximum, p.initial * p.multiplier ** min(self.attempt, 64))
        self.attempt += 1
        return ceiling * (1.0 - p.jitter) + ceiling * p.jitter * self._rand()

    def reset(self) -> None:
        """Start over from ``initial`` (after a healthy stream, or a redirect)."""
        self.attempt = 0

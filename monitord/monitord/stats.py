"""Counters shown in the periodic status line, STATUS= and /metrics, one object per owner.

Each owner writes its own counters (event-loop confined); :mod:`monitord.metrics` only reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Why a credential was refused (the ``reason`` label of ``monitord_auth_failures_total``).
AUTH_FAILURE_REASONS = ("unknown_token", "foreign_token", "no_credentials", "certificate_mismatch")


@dataclass
class AuthStats:
    """Refused credentials (written by :class:`monitord.auth.Authenticator`)."""

    #: Calls refused after checking their credential, by reason (:data:`AUTH_FAILURE_REASONS`).
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    #: Calls refused unchecked because their peer host (or claimed agent id) was over its budget.
    throttled: int = 0
    #: Peer hosts whose recent failures are remembered now (bounded by ``server.auth.tracked_peers``).
    tracked_peers: int = 0

    def note_failure(self, reason: str) -> None:
        self.failures_by_reason[reason] = self.failures_by_reason.get(reason, 0) + 1


@dataclass
class ServerStats:
    """What the agent streams carried, since start (written by the stream handlers)."""

    received: int = 0
    forwarded: int = 0
    failed: int = 0
    rejected: int = 0
    acks: int = 0
    heartbeats: int = 0
    #: Command responses agents sent through their streams, by status name.
    responses_by_status: dict[str, int] = field(default_factory=dict)
    #: Highest spool-drop count each agent reported in its heartbeats.
    agent_drops: dict[str, int] = field(default_factory=dict)
    #: Authentication failures and throttling (the Authenticator is handed this object).
    auth: AuthStats = field(default_factory=AuthStats)

    def note_agent_drops(self, agent_id: str, dropped: int) -> None:
        self.agent_drops[agent_id] = max(dropped, self.agent_drops.get(agent_id, 0))

    def note_response(self, status: str) -> None:
        self.responses_by_status[status] = self.responses_by_status.get(status, 0) + 1


@dataclass
class SessionStats:
    """Agent streams (written by the session registry)."""

    #: Streams accepted since start.
    opened: int = 0
    #: Streams ended since start, for any reason (a replaced stream included).
    closed: int = 0
    #: Streams open now.
    connected: int = 0


@dataclass
class IntakeStats:
    """The commands consumer (written on the event loop from its assignment callback)."""

    #: Partitions it reads (commands, command-responses, agent-status); set once the replay is done.
    partitions_assigned: int = 0
    #: Records read by the start-up replay (commands and responses of the last max_ttl_seconds).
    replayed: int = 0


@dataclass
class RouterStats:
    """Commands (written by the command router)."""

    #: Commands written to agent streams (a command pushed again after a reconnect counts again).
    pushed: int = 0
    #: Commands held now for agents that are not connected (or not yet confirmed DELIVERED).
    held: int = 0
    #: Answers monitord owes (EXPIRED, INVALID) and has not read back from Kafka yet.
    owed: int = 0
    #: Partitions of the commands topic this instance writes monitord's answers for.
    partitions_owned: int = 0
    #: Answers monitord itself gave (EXPIRED, INVALID), by status name.
    answered_by_status: dict[str, int] = field(default_factory=dict)


class RateMeter:
    """Records per second of a growing counter, re-measured at most once a second (so the STATUS=
    refresh and the periodic log line, read moments apart, agree)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sample = (clock(), 0)
        self._rate = 0.0

    def rate(self, count: int) -> float:
        now = self._clock()
        then, before = self._sample
        if now - then >= 1:
            self._sample, self._rate = (now, count), (count - before) / (now - then)
        return self._rate

"""What monitord says about Kafka: up, degraded or down, decided from facts, not from client errors.

librdkafka's error callbacks report single connections (one dead broker of three looks like an
outage) and its delivery timeouts report the past (a total outage looks fine until they expire).
:class:`KafkaHealth` decides from what monitord itself observes instead:

* **up**: records are being confirmed (or nothing waits and a broker answers);
* **degraded**: still up, but cluster metadata shows partitions of our topics without a leader or
  with fewer in-sync replicas than ``min.insync.replicas``;
* **down**: records have waited ``down_after`` seconds without any confirmation, no broker has
  answered for that long, or the producer hit a fatal error (it cannot recover: restart monitord).

Leaving *down* needs confirmations (or, with nothing waiting, broker answers) for ``up_after``
seconds with no record waiting longer than half of that meanwhile; leaving *degraded* needs clean metadata for
``up_after`` seconds. Each change is one :class:`Transition`, logged once by :func:`announce`.
The machine is pure: every input carries its time, so tests drive it with a fake clock.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


class KafkaState(enum.IntEnum):
    """The values of ``monitord_kafka_state``."""

    DOWN = 0
    DEGRADED = 1
    UP = 2


@dataclass(frozen=True)
class ClusterReport:
    """What one metadata request said about the partitions of monitord's topics."""

    partitions: int = 0
    no_leader: int = 0
    #: Partitions whose in-sync replicas are fewer than the topic's ``min.insync.replicas``.
    under_min_isr: int = 0
    #: Partitions with fewer in-sync replicas than replicas (shown in /metrics, not a state).
    under_replicated: int = 0
    #: Our topics the cluster does not know (or reported an error for).
    missing_topics: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not (self.no_leader or self.under_min_isr or self.missing_topics)

    def problems(self) -> str:
        """``"2 partitions without leader, 6 under min ISR"`` (empty when healthy)."""
        parts = []
        if self.no_leader:
            parts.append(f"{self.no_leader} partition{'s' * (self.no_leader != 1)} without leader")
        if self.under_min_isr:
            parts.append(f"{self.under_min_isr} partition{'s' * (self.under_min_isr != 1)} under min ISR")
        if self.missing_topics:
            parts.append("topic missing: " + ", ".join(self.missing_topics))
        return ", ".join(parts)


@dataclass(frozen=True)
class KafkaStatus:
    """A snapshot for STATUS=, /metrics and health."""

    state: KafkaState
    #: Why (empty when up): ``"no confirmation for 12 s"``, ``"3 partitions under min ISR"``.
    detail: str
    #: How long records have waited without any confirmation (0 while they flow or none wait).
    unconfirmed_seconds: float
    #: The latest metadata answer (None before the first one, or without a metadata source).
    report: ClusterReport | None

    @property
    def up(self) -> bool:
        """Not down: what ``monitord_kafka_up`` and gRPC health report."""
        return self.state is not KafkaState.DOWN

    @property
    def text(self) -> str:
        """``up``, ``degraded (...)`` or ``DOWN (...)`` for the status line."""
        if self.state is KafkaState.UP:
            return "up"
        name = "degraded" if self.state is KafkaState.DEGRADED else "DOWN"
        return f"{name} ({self.detail})" if self.detail else name


@dataclass(frozen=True)
class Transition:
    """One change of state."""

    old: KafkaState
    new: KafkaState
    detail: str
    #: Seconds spent in ``old``.
    lasted: float


class KafkaHealth:
    """The state machine; call the inputs as things happen and :meth:`evaluate` after them and on a tick."""

    def __init__(self, *, down_after: float, up_after: float, now: float) -> None:
        self._down_after, self._up_after = down_after, up_after
        self.state = KafkaState.UP  # until proven otherwise: a fresh instance serves
        self._outstanding = 0
        #: Since when records have waited without a confirmation (None: nothing waits).
        self._waiting_since: float | None = None
        self._last_contact = now  # the last confirmation or broker answer
        self._probed = False  # "no broker answered" needs a metadata source asking
        self._report: ClusterReport | None = None
        self._clean_since: float | None = None
        self._recovering_since: float | None = None
        self._fatal = ""
        self._changed_at = now

    # -- inputs ----------------------------------------------------------------------------------

    def sent(self, now: float) -> None:
        """A record was handed to the producer."""
        self._outstanding += 1
        if self._waiting_since is None:
            self._waiting_since = now

    def settled(self, now: float, confirmed: int = 0, failed: int = 0) -> None:
        """Delivery reports: ``confirmed`` records (a permanent refusal counts: a broker answered),
        ``failed`` ones that will be sent again. A failure is no progress: the clock keeps running
        until a record is confirmed, even if nothing is outstanding meanwhile."""
        self._outstanding = max(0, self._outstanding - confirmed - failed)
        if confirmed:
            self._waiting_since = now if self._outstanding else None
            self._progress(now)

    def cluster(self, now: float, report: ClusterReport | None) -> None:
        """A metadata answer (None: no broker answered the request)."""
        self._probed = True
        if report is None:
            return
        self._last_contact = now
        self._report = report
        if not report.healthy:
            self._clean_since = None
        elif self._clean_since is None:
            self._clean_since = now
        if self._waiting_since is None:  # an answer is progress only while no record waits
            self._progress(now)

    def fatal(self, now: float, detail: str) -> None:
        """The producer failed for good (librdkafka fatal error)."""
        self._fatal = f"fatal: {detail}"

    def _progress(self, now: float) -> None:
        self._last_contact = now
        if self.state is KafkaState.DOWN and self._recovering_since is None:
            self._recovering_since = now

    # -- decision --------------------------------------------------------------------------------

    def unconfirmed_for(self, now: float) -> float:
        return 0.0 if self._waiting_since is None else max(0.0, now - self._waiting_since)

    def _down_reason(self, now: float) -> str:
        if self._fatal:
            return self._fatal
        if (waited := self.unconfirmed_for(now)) > self._down_after:
            return f"no confirmation for {waited:.0f} s"
        if self._probed and (silent := now - self._last_contact) > self._down_after:
            return f"no broker answered for {silent:.0f} s"
        return ""

    def _target(self, now: float) -> KafkaState:
        if self._down_reason(now):
            return KafkaState.DOWN
        if self.state is KafkaState.DOWN:
            if self._recovering_since is not None and self.unconfirmed_for(now) > self._up_after / 2:
                self._recovering_since = None  # confirmations stopped again: the hold starts over
            if self._recovering_since is None or now - self._recovering_since < self._up_after:
                return KafkaState.DOWN
        if self._report is not None and not self._report.healthy:
            return KafkaState.DEGRADED
        if self.state is KafkaState.DEGRADED and (
            self._clean_since is None or now - self._clean_since < self._up_after
        ):
            return KafkaState.DEGRADED
        return KafkaState.UP

    def evaluate(self, now: float) -> Transition | None:
        """Apply the rules at ``now``; the change, if there is one."""
        new = self._target(now)
        if new is self.state:
            return None
        old, lasted = self.state, now - self._changed_at
        self.state, self._changed_at = new, now
        self._recovering_since = None
        return Transition(old, new, self.detail(now), lasted)

    def detail(self, now: float) -> str:
        """Why the state is what it is (empty when up)."""
        problems = self._report.problems() if self._report is not None else ""
        if self.state is KafkaState.DOWN:
            reason = self._down_reason(now) or (
                "waiting for confirmations to resume" if self._recovering_since is None else "confirmations resumed"
            )
            return f"{reason}; {problems}" if problems else reason
        return problems if self.state is KafkaState.DEGRADED else ""

    def status(self, now: float) -> KafkaStatus:
        return KafkaStatus(self.state, self.detail(now), self.unconfirmed_for(now), self._report)


def announce(change: Transition) -> None:
    """Log one state change (fixed texts: operators and tests look for them)."""
    if change.new is KafkaState.DOWN:
        log.warning("Kafka unavailable: %s — records wait for it, agents keep spooling", change.detail)
    elif change.old is KafkaState.DOWN:
        if change.new is KafkaState.UP:
            log.info("✓ Kafka reachable again (records confirmed; down for %.0f s)", change.lasted)
        else:
            log.warning("✓ Kafka reachable again, but degraded: %s (down for %.0f s)", change.detail, change.lasted)
    elif change.new is KafkaState.DEGRADED:
        log.warning("Kafka degraded: %s — records for those partitions may wait", change.detail)
    else:
        log.info("✓ Kafka healthy again (every partition has a leader and enough in-sync replicas)")

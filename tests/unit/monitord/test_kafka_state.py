"""The Kafka state machine on a fake clock: every transition, and the hysteresis that keeps it from
flapping (down only after ``down_after`` s without confirmations, up only after ``up_after`` s of
them again, degraded from metadata and left only after clean metadata for ``up_after`` s)."""

from __future__ import annotations

import logging

import pytest

from monitord.kafka_state import ClusterReport, KafkaHealth, KafkaState, Transition, announce

DOWN, DEGRADED, UP = KafkaState.DOWN, KafkaState.DEGRADED, KafkaState.UP
CLEAN = ClusterReport(partitions=6, under_replicated=0)
ONE_DEAD = ClusterReport(partitions=6, under_replicated=6)  # ISR 2 of 3 with min ISR 2: still up
UNDER_MIN = ClusterReport(partitions=6, under_min_isr=6, under_replicated=6)
NO_LEADER = ClusterReport(partitions=6, no_leader=2, under_replicated=2)


class Clocked:
    """A :class:`KafkaHealth` whose calls all take the time from one fake clock."""

    def __init__(self, down_after: float = 10, up_after: float = 3) -> None:
        self.now = 1000.0
        self.health = KafkaHealth(down_after=down_after, up_after=up_after, now=self.now)
        self.changes: list[Transition] = []

    def at(self, t: float) -> Clocked:
        """Move the clock to ``start + t`` and evaluate (a tick)."""
        self.now = 1000.0 + t
        if (change := self.health.evaluate(self.now)) is not None:
            self.changes.append(change)
        return self

    def send(self, count: int = 1) -> None:
        for _ in range(count):
            self.health.sent(self.now)

    def confirm(self, count: int = 1, failed: int = 0) -> None:
        self.health.settled(self.now, count, failed)
        self.at(self.now - 1000.0)

    def metadata(self, report: ClusterReport | None) -> None:
        self.health.cluster(self.now, report)
        self.at(self.now - 1000.0)

    @property
    def state(self) -> KafkaState:
        return self.health.state

    def path(self) -> list[tuple[KafkaState, KafkaState]]:
        return [(c.old, c.new) for c in self.changes]


def stream(k: Clocked, start: float, end: float, step: float = 0.5) -> None:
    """Records sent and confirmed every ``step`` s from ``start`` to ``end`` (a healthy stream)."""
    t = start
    while t <= end:
        k.at(t)
        k.send()
        k.confirm()
        t += step


def test_starts_up_and_stays_up_while_records_are_confirmed() -> None:
    k = Clocked()
    assert k.state is UP and k.health.status(k.now).text == "up"
    stream(k, 0, 60)
    assert k.changes == [] and k.health.status(k.now).unconfirmed_seconds == 0


def test_idle_with_nothing_outstanding_is_not_down() -> None:
    k = Clocked()
    k.send()
    k.confirm()
    assert k.at(3600).state is UP  # no metadata source, nothing waits: nothing to report


def test_down_only_after_down_after_seconds_without_confirmation_then_one_recovery() -> None:
    k = Clocked(down_after=10, up_after=3)
    stream(k, 0, 5)
    k.send(5)  # the broker stops: these wait
    for t in range(6, 16):
        assert k.at(t).state is UP, t  # 10 s of waiting is not yet down
    assert k.at(15.4).state is DOWN
    assert k.health.status(k.now).text == "DOWN (no confirmation for 10 s)"
    assert k.health.status(k.now).unconfirmed_seconds == pytest.approx(10.4)
    for t in range(16, 60):
        k.at(t)
        k.send()  # agents keep sending, nothing is confirmed
    assert k.state is DOWN and "no confirmation for 54 s" in k.health.detail(k.now)
    # The broker is back: the backlog is confirmed, then the stream flows again.
    k.at(60)
    k.confirm(20)
    assert k.state is DOWN  # one confirmation is not yet "resumed"
    stream(k, 60.5, 62.5)
    assert k.state is DOWN
    stream(k, 63, 70)
    assert k.path() == [(UP, DOWN), (DOWN, UP)]  # exactly one change each way, no flapping
    assert k.changes[1].lasted == pytest.approx(63 - 15.4)


def test_a_failed_record_is_no_progress_even_with_nothing_outstanding() -> None:
    k = Clocked(down_after=10)
    k.send()
    k.at(5)
    k.confirm(0, failed=1)  # delivery timed out: the agent will send it again
    assert k.at(10.5).state is DOWN
    assert k.health.status(k.now).unconfirmed_seconds == pytest.approx(10.5)


def test_a_permanent_refusal_counts_as_an_answer() -> None:
    k = Clocked(down_after=10)
    k.send()
    k.at(5)
    k.confirm(1)  # MSG_SIZE_TOO_LARGE: the broker answered
    assert k.at(100).state is UP


def test_confirmations_that_stop_again_restart_the_hold() -> None:
    k = Clocked(down_after=10, up_after=3)
    k.send()
    assert k.at(11).state is DOWN
    k.send(10)
    k.confirm(1)  # one confirmation at 11, the other nine wait
    for t in (12, 13, 14, 15):
        assert k.at(t).state is DOWN, t  # waiting > up_after / 2 during the hold: it starts over
    stream(k, 15.5, 18)
    assert k.state is DOWN  # the hold counts from 15.5
    stream(k, 18.5, 19)
    assert k.state is UP and k.path() == [(UP, DOWN), (DOWN, UP)]


def test_no_broker_answering_is_down_even_when_idle_and_answers_bring_it_back() -> None:
    k = Clocked(down_after=10, up_after=3)
    k.metadata(CLEAN)
    for t in range(5, 11, 5):
        k.at(t)
        k.metadata(None)  # metadata requests time out
    assert k.state is UP
    assert k.at(10.5).state is DOWN
    assert k.health.detail(k.now) == "no broker answered for 10 s"
    k.at(15)
    k.metadata(CLEAN)
    assert k.state is DOWN and k.health.detail(k.now) == "confirmations resumed"
    assert k.at(17.9).state is DOWN
    assert k.at(18).state is UP
    assert k.path() == [(UP, DOWN), (DOWN, UP)]


def test_without_a_metadata_source_silence_alone_is_not_down() -> None:
    k = Clocked()
    assert k.at(1000).state is UP  # cluster() was never called: nobody asked the brokers


def test_an_answer_while_records_wait_does_not_end_the_outage() -> None:
    k = Clocked(down_after=10, up_after=3)
    k.send()
    assert k.at(11).state is DOWN
    for t in range(12, 30, 5):
        k.at(t)
        k.metadata(UNDER_MIN)  # brokers answer, but min ISR is not met: nothing is confirmed
    assert k.state is DOWN
    assert k.health.status(k.now).text == "DOWN (no confirmation for 27 s; 6 partitions under min ISR)"


def test_degraded_from_metadata_and_back_after_clean_metadata_for_up_after() -> None:
    k = Clocked(down_after=10, up_after=3)
    stream(k, 0, 2)
    k.metadata(ONE_DEAD)
    assert k.state is UP  # under-replicated but at min ISR: not a state
    k.metadata(NO_LEADER)
    assert k.state is DEGRADED
    assert k.health.status(k.now).text == "degraded (2 partitions without leader)"
    stream(k, 2.5, 7)
    k.metadata(UNDER_MIN)
    assert k.state is DEGRADED and k.health.detail(k.now) == "6 partitions under min ISR"
    k.at(10)
    k.metadata(CLEAN)
    assert k.state is DEGRADED
    stream(k, 10.5, 12.5)
    assert k.state is DEGRADED  # clean for 2.5 s only
    k.metadata(NO_LEADER)
    k.metadata(CLEAN)  # a single clean answer after a dirty one starts the hold again
    stream(k, 13, 15)
    assert k.state is DEGRADED
    stream(k, 15.5, 16)
    assert k.state is UP
    assert k.path() == [(UP, DEGRADED), (DEGRADED, UP)]


def test_degraded_then_down_then_reachable_but_degraded_then_up() -> None:
    k = Clocked(down_after=10, up_after=3)
    k.metadata(NO_LEADER)
    k.send()
    assert k.at(10.5).state is DOWN
    k.at(20)
    k.metadata(UNDER_MIN)
    stream(k, 20, 24)
    assert k.state is DEGRADED
    k.metadata(CLEAN)
    stream(k, 24.5, 27.5)
    assert k.state is UP
    assert k.path() == [(UP, DEGRADED), (DEGRADED, DOWN), (DOWN, DEGRADED), (DEGRADED, UP)]


def test_a_missing_topic_is_degraded() -> None:
    k = Clocked()
    k.metadata(ClusterReport(partitions=3, missing_topics=("agent-status",)))
    assert k.health.status(k.now).text == "degraded (topic missing: agent-status)"


def test_fatal_is_down_for_good() -> None:
    k = Clocked()
    k.health.fatal(k.now, "fenced")
    k.at(0)
    assert k.state is DOWN and k.health.detail(k.now) == "fatal: fenced"
    stream(k, 1, 30)
    k.metadata(CLEAN)
    assert k.state is DOWN and k.path() == [(UP, DOWN)]


def test_each_change_is_announced_once_with_fixed_texts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="monitord.kafka_state"):
        announce(Transition(UP, DOWN, "no confirmation for 11 s", 100))
        announce(Transition(DOWN, UP, "", 42))
        announce(Transition(UP, DEGRADED, "2 partitions without leader", 5))
        announce(Transition(DEGRADED, UP, "", 5))
        announce(Transition(DOWN, DEGRADED, "6 partitions under min ISR", 7))
    assert caplog.messages == [
        "Kafka unavailable: no confirmation for 11 s — records wait for it, agents keep spooling",
        "✓ Kafka reachable again (records confirmed; down for 42 s)",
        "Kafka degraded: 2 partitions without leader — records for those partitions may wait",
        "✓ Kafka healthy again (every partition has a leader and enough in-sync replicas)",
        "✓ Kafka reachable again, but degraded: 6 partitions under min ISR (down for 7 s)",
    ]
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING", "INFO", "WARNING"]

"""The Kafka bridge: a record's future resolves only after its delivery report, which librdkafka
runs on the poll thread; a full local queue is waited out, never a drop. The Kafka state follows
confirmations and cluster metadata (on a fake clock), never single client errors."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

from monitord.config import KafkaSection
from monitord.errors import DeliveryError, ProducerClosed
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.kafka_state import KafkaState, KafkaStatus
from monitoring_testsupport.fakes.kafka_admin import AdminFactory, healthy
from monitoring_testsupport.fakes.monitord import WAIT, ProducerFactory, until

TOPICS = ("monitoring-data", "agent-status", "command-responses")


def bridge(factory: ProducerFactory, cfg: KafkaSection | None = None, **kwargs: object) -> KafkaProducerBridge:
    return KafkaProducerBridge(cfg or KafkaSection(), client_id="t", producer_factory=factory, **kwargs)  # type: ignore[arg-type]


class FakeClock:
    """The bridge's clock (read on the loop and the poll thread); a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_future_resolves_only_after_the_delivery_report_on_the_poll_thread() -> None:
    async def scenario() -> None:
        factory = ProducerFactory(auto=False)
        b = bridge(factory)
        await b.start()
        fake = factory.producer
        assert fake.conf["client.id"] == "t" and fake.conf["error_cb"] and fake.conf["logger"]
        ok = await b.produce("t", b"k", b"v", [])
        bad = await b.produce("t", b"k", b"v", [])
        await until(lambda: fake.polls > 3, what="the poll thread polling")
        assert not ok.done() and not bad.done()  # nothing resolves before Kafka answers
        fake.release(1)
        fake.release(1, KafkaError(KafkaError._MSG_TIMED_OUT))
        await asyncio.wait_for(ok, WAIT)
        with pytest.raises(DeliveryError) as info:
            await asyncio.wait_for(bad, WAIT)
        assert info.value.retriable
        assert fake.callback_threads == {"kafka-poll"}  # never on the event loop's thread
        assert b.delivered == 1 and b.failed == 1
        assert b.kafka_up  # one timed-out record is no outage (nothing waits any longer than that)
        assert b.delivery_path_alive() and b.queue_depth == 0
        assert await b.close(timeout=1) == 0
        assert not b.delivery_path_alive()

    asyncio.run(scenario())


def test_a_full_local_queue_is_waited_out_and_kafka_comes_back() -> None:
    async def scenario() -> None:
        factory = ProducerFactory(auto=False)
        b = bridge(factory)
        await b.start()
        fake = factory.producer
        first = await b.produce("t", b"k", b"v", [])
        fake.release(1, KafkaError(KafkaError._MSG_TIMED_OUT))
        with pytest.raises(DeliveryError):
            await asyncio.wait_for(first, WAIT)
        fake.full = 2  # librdkafka's queue is full twice: produce waits instead of dropping
        assert b.produce_nowait("t", b"k", b"v", []) is None
        later = await b.produce("t", b"k", b"v", [])
        assert fake.full == 0 and len(fake.produced) == 2
        fake.release(1)
        await asyncio.wait_for(later, WAIT)
        assert b.kafka_up
        await b.close(timeout=1)

    asyncio.run(scenario())


def test_permanent_errors_are_not_retriable_and_refusals_raise() -> None:
    async def scenario() -> None:
        factory = ProducerFactory(auto=False)
        b = bridge(factory)
        await b.start()
        fake = factory.producer
        fut = await b.produce("t", b"k", b"v", [])
        fake.release(1, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        with pytest.raises(DeliveryError) as info:
            await asyncio.wait_for(fut, WAIT)
        assert not info.value.retriable and "Kafka delivery failed" in info.value.reason

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise KafkaException(KafkaError(KafkaError.INVALID_CONFIG, "bad topic"))

        fake.produce = refuse  # type: ignore[method-assign]
        with pytest.raises(DeliveryError) as refused:
            b.produce_nowait("t", b"k", b"v", [])
        assert not refused.value.retriable
        await b.close(timeout=1)
        with pytest.raises(ProducerClosed):
            b.produce_nowait("t", b"k", b"v", [])
        assert await b.close(timeout=1) == 0  # idempotent

    asyncio.run(scenario())


def test_background_publishes_are_drained_and_failures_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        factory = ProducerFactory(auto=False)
        b = bridge(factory)
        await b.start()
        fake = factory.producer
        b.publish_soon("agent-status", b"a", b"v1", [], "presence of agent 'a'")
        b.publish_soon("agent-status", b"b", b"v2", [], "presence of agent 'b'")
        await until(lambda: fake.waiting == 2, what="both publishes handed over")
        fake.release(1)
        fake.release(1, KafkaError(KafkaError._MSG_TIMED_OUT))
        await b.drain(timeout=WAIT)
        await b.close(timeout=1)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "Could not publish presence of agent 'b': Kafka delivery failed" in caplog.text


def test_connection_errors_leave_the_state_alone_and_a_fatal_error_is_down_for_good(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        factory = ProducerFactory()
        states: list[KafkaStatus] = []
        b = bridge(factory, on_state_change=states.append)
        await b.start()
        error_cb = factory.producer.conf["error_cb"]
        for code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):  # one broker of three, or all
            on_thread = threading.Thread(target=error_cb, args=(KafkaError(code, "gone"),))
            on_thread.start()
            on_thread.join(WAIT)
        await asyncio.wait_for(await b.produce("t", b"k", b"v", []), WAIT)
        assert b.kafka_up and states == []
        error_cb(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
        await until(lambda: not b.kafka_up, what="the fatal state")
        await asyncio.wait_for(await b.produce("t", b"k", b"v", []), WAIT)
        assert b.kafka_status().text == "DOWN (fatal: fenced)" and [s.state for s in states] == [KafkaState.DOWN]
        await b.close(timeout=1)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert "Kafka producer fatal error: fenced" in caplog.text
    assert caplog.text.count("Kafka unavailable: fatal: fenced") == 1


def test_records_unconfirmed_for_down_after_are_down_until_confirmations_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        clock, states = FakeClock(), list[KafkaStatus]()
        factory = ProducerFactory(auto=False)
        cfg = KafkaSection(down_after_seconds=10, up_after_seconds=3)
        b = bridge(factory, cfg, on_state_change=states.append, clock=clock)
        await b.start()
        fake = factory.producer
        waiting = [await b.produce("t", b"k", b"v", []) for _ in range(3)]
        clock.now += 9.9
        await until(lambda: b.kafka_status().unconfirmed_seconds == pytest.approx(9.9), what="a tick")
        assert b.kafka_up  # not yet
        clock.now += 0.2
        await until(lambda: not b.kafka_up, what="Kafka marked down")
        assert b.kafka_status().text == "DOWN (no confirmation for 10 s)"
        fake.release(3)
        await asyncio.wait_for(asyncio.gather(*waiting), WAIT)
        assert not b.kafka_up  # the hold: confirmations must go on for up_after
        clock.now += 3
        await until(lambda: b.kafka_up, what="Kafka up again")
        assert [s.state for s in states] == [KafkaState.DOWN, KafkaState.UP]
        await b.close(timeout=1)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert caplog.text.count("Kafka unavailable: no confirmation for 10 s") == 1
    assert caplog.text.count("✓ Kafka reachable again (records confirmed; down for 3 s)") == 1


def test_cluster_metadata_makes_it_degraded_and_silent_brokers_down() -> None:
    async def scenario() -> None:
        clock, states = FakeClock(), list[KafkaStatus]()
        admins = AdminFactory({t: healthy() for t in TOPICS})
        cfg = KafkaSection(down_after_seconds=10, up_after_seconds=3, metadata_interval_seconds=1)
        b = bridge(ProducerFactory(), cfg, admin_factory=admins, on_state_change=states.append, clock=clock)
        await b.start()
        await until(lambda: b.kafka_status().report is not None, what="the first metadata answer")
        admin = admins.admin
        admin.partitions["agent-status"] = [(-1, [1, 2, 3], []), (2, [1, 2, 3], [2])]
        await until(lambda: b.kafka_status().state is KafkaState.DEGRADED, what="degraded")
        assert (
            b.kafka_up and b.kafka_status().text == "degraded (1 partition without leader, 2 partitions under min ISR)"
        )
        admin.partitions["agent-status"] = healthy()
        await until(lambda: b.kafka_status().report.healthy, what="clean metadata")  # type: ignore[union-attr]
        clock.now += 3
        await until(lambda: b.kafka_status().state is KafkaState.UP, what="up again")
        admin.unreachable = True
        requests = admin.metadata_requests
        await until(lambda: admin.metadata_requests > requests, what="a failed request")
        clock.now += 10.5
        await until(lambda: not b.kafka_up, what="down: no broker answers")
        assert b.kafka_status().text.startswith("DOWN (no broker answered for 1")
        assert [s.state for s in states] == [KafkaState.DEGRADED, KafkaState.UP, KafkaState.DOWN]
        assert await b.close(timeout=1) == 0

    asyncio.run(scenario())


def test_close_reports_records_left_undelivered(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        factory = ProducerFactory(auto=False)
        b = bridge(factory)
        await b.start()
        await b.produce("t", b"k", b"v", [])
        return await b.close(timeout=0.1)

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == 1
    assert "Kafka producer closed with 1 records undelivered" in caplog.text

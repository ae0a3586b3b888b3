"""The Kafka bridge: a record's future resolves only after its delivery report, which librdkafka
runs on the poll thread; a full local queue is waited out, never a drop."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

from monitord.config import KafkaSection
from monitord.errors import DeliveryError, ProducerClosed
from monitord.kafka_bridge import KafkaProducerBridge
from monitoring_testsupport.fakes.monitord import WAIT, ProducerFactory, until


def bridge(factory: ProducerFactory, **kwargs: object) -> KafkaProducerBridge:
    return KafkaProducerBridge(KafkaSection(), client_id="t", producer_factory=factory, **kwargs)  # type: ignore[arg-type]


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
        assert b.delivered == 1 and b.failed == 1 and not b.kafka_up
        assert b.delivery_path_alive() and b.queue_depth == 0
        assert await b.close(timeout=1) == 0
        assert not b.delivery_path_alive()

    asyncio.run(scenario())


def test_a_full_local_queue_is_waited_out_and_kafka_comes_back() -> None:
    async def scenario() -> None:
        states: list[bool] = []
        factory = ProducerFactory(auto=False)
        b = bridge(factory, on_state_change=lambda up, _detail: states.append(up))
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
        assert b.kafka_up and states == [False, True]
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


def test_client_errors_change_the_state_on_the_loop() -> None:
    async def scenario() -> None:
        factory = ProducerFactory()
        states: list[tuple[bool, str]] = []
        b = bridge(factory, on_state_change=lambda up, detail: states.append((up, detail)))
        await b.start()
        error_cb = factory.producer.conf["error_cb"]
        on_thread = threading.Thread(target=error_cb, args=(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all down"),))
        on_thread.start()
        on_thread.join(WAIT)
        await until(lambda: not b.kafka_up, what="Kafka marked down")
        assert b.kafka_state == "all down" and states == [(False, "all down")]
        error_cb(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
        await until(lambda: b.kafka_state == "fatal: fenced", what="the fatal state")
        error_cb(KafkaError(KafkaError._MSG_TIMED_OUT, "just a warning"))
        fut = await b.produce("t", b"k", b"v", [])
        await asyncio.wait_for(fut, WAIT)
        assert b.kafka_up and b.kafka_state == "delivering"
        await b.close(timeout=1)

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

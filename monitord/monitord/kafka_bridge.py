"""The Kafka side of monitord: an idempotent producer whose delivery reports become awaitables.

librdkafka is driven by one background thread that calls ``poll()``; delivery reports collected in
one poll are handed to the event loop in a single ``call_soon_threadsafe``, so the loop is never
blocked on Kafka and is woken once per batch, not once per record. A record's future resolves only
when Kafka confirmed it (``acks=all``) -- that is what the agent's ack waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import confluent_kafka
from confluent_kafka import KafkaError

from monitord.config import KafkaSection
from monitord.errors import DeliveryError, ProducerClosed
from monitord.kafka_clients import ProducerFactory, QueueingProducer, librdkafka_logger, producer_config
from monitoring_common.metrics_http import LatencyHistogram

log = logging.getLogger(__name__)

DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Errors after which sending the same record again cannot succeed.
_PERMANENT = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG_SIZE,
}


class KafkaProducerBridge:
    """Owns the producer and its poll thread; ``produce()`` returns a delivery future."""

    def __init__(
        self,
        cfg: KafkaSection,
        *,
        client_id: str,
        producer_factory: ProducerFactory | None = None,
        on_state_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self._factory: ProducerFactory = producer_factory or confluent_kafka.Producer  # type: ignore[assignment]
        self._on_state_change = on_state_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: QueueingProducer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self._reports: list[tuple[asyncio.Future[None], KafkaError | None]] = []
        self.kafka_up = True
        self.kafka_state = "connecting"
        self.delivered = 0
        self.failed = 0
        self.last_poll = time.monotonic()
        self._flush_seconds = 0.0
        #: Produce-to-confirmation time of every record (filled on the poll thread, read by /metrics).
        self.delivery_latency = LatencyHistogram(DELIVERY_BUCKETS)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the producer and start the poll thread."""
        self._loop = asyncio.get_running_loop()
        conf = producer_config(self._cfg, self._client_id)
        conf["error_cb"] = self._on_error
        conf["logger"] = librdkafka_logger("producer")
        self._producer = self._factory(conf)
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    async def close(self, timeout: float) -> int:
        """Flush what is queued (up to ``timeout`` s), stop the thread; returns records left unsent."""
        if self._closed:
            return 0
        self._closed = True
        self._flush_seconds = timeout
        self._stop.set()
        if self._thread is not None:
            thread = self._thread
            await asyncio.get_running_loop().run_in_executor(None, thread.join, timeout + 5)
        remaining = len(self._producer) if self._producer is not None else 0
        if remaining:
            log.error("Kafka producer closed with %d records undelivered", remaining)
        return remaining

    # -- producing -------------------------------------------------------------------------------

    def produce_nowait(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None] | None:
        """Hand one record to librdkafka if its local queue has room; None if it is full.

        The future resolves when Kafka has the record, or fails with :class:`DeliveryError`.
        """
        assert self._loop is not None and self._producer is not None, "start() first"
        if self._closed:
            raise ProducerClosed()
        fut: asyncio.Future[None] = self._loop.create_future()
        reports, latency, clock = self._reports, self.delivery_latency, time.monotonic
        handed = clock()

        def on_delivery(err: KafkaError | None, _msg: object) -> None:  # on the poll thread
            latency.observe(clock() - handed)
            reports.append((fut, err))

        try:
            self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
        except BufferError:
            return None
        except confluent_kafka.KafkaException as exc:
            raise DeliveryError(str(exc.args[0] if exc.args else exc), retriable=False) from None
        return fut

    async def produce(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        """:meth:`produce_nowait`, waiting while librdkafka's local queue is full (backpressure,
        not drops)."""
        delay = 0.005
        while (fut := self.produce_nowait(topic, key, value, headers)) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return fut

    def publish_soon(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        what: str,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Produce in the background (monitord's own records: presence, command answers); a
        failure is logged (and reported to ``on_failure``), nobody waits for it. :meth:`drain`
        waits for these before closing."""
        task = asyncio.get_running_loop().create_task(self._publish(topic, key, value, headers, what, on_failure))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        what: str,
        on_failure: Callable[[], None] | None,
    ) -> None:
        try:
            await (await self.produce(topic, key, value, headers))
        except DeliveryError as exc:
            log.warning("Could not publish %s: %s", what, exc.reason)
            if on_failure is not None:
                on_failure()

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for background publishes."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    @property
    def queue_depth(self) -> int:
        """Records queued in librdkafka, not yet delivered."""
        return len(self._producer) if self._producer is not None else 0

    def delivery_path_alive(self, now: float | None = None) -> bool:
        """The poll thread is alive and polled recently (Kafka itself may still be down: restarting
        monitord would not fix that, so it is not a reason to withhold the watchdog)."""
        now = time.monotonic() if now is None else now
        return self._thread is not None and self._thread.is_alive() and now - self.last_poll < 10

    # -- poll thread -----------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        assert self._producer is not None and self._loop is not None
        producer, loop = self._producer, self._loop
        while not self._stop.is_set():
            producer.poll(0.1)
            self.last_poll = time.monotonic()
            self._hand_over(loop)
        producer.flush(self._flush_seconds)
        self._hand_over(loop)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._reports:
            return
        # Delivery callbacks run inside poll() on this thread, so taking the list here is safe.
        batch = self._reports.copy()
        self._reports.clear()
        with contextlib.suppress(RuntimeError):  # loop closed during interpreter shutdown
            loop.call_soon_threadsafe(self._settle, batch)

    def _settle(self, batch: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
        for fut, err in batch:
            if err is None:
                self.delivered += 1
                if not self.kafka_up:
                    self._set_state(True, "delivering")
                if not fut.done():
                    fut.set_result(None)
            else:
                self.failed += 1
                if not fut.done():
                    fut.set_exception(
                        DeliveryError(f"Kafka delivery failed: {err.str()}", retriable=err.code() not in _PERMANENT)
                    )
                if err.code() == KafkaError._MSG_TIMED_OUT:
                    self._set_state(False, "delivery timing out")

    def _on_error(self, err: KafkaError) -> None:
        # Called from poll() on the poll thread.
        code = err.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._set_state, False, err.str())
        elif err.fatal():
            log.critical("Kafka producer fatal error: %s", err.str())
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._set_state, False, "fatal: " + err.str())
        else:
            log.warning("Kafka client error: %s", err.str())

    def _set_state(self, up: bool, detail: str) -> None:
        if up == self.kafka_up and self.kafka_state == detail:
            return
        changed = up != self.kafka_up
        self.kafka_up, self.kafka_state = up, detail
        if changed:
            if up:
                log.info("✓ Kafka reachable again (%s)", detail)
            else:
                log.warning("Kafka unavailable: %s — records wait for it, agents keep spooling", detail)
            if self._on_state_change is not None:
                self._on_state_change(up, detail)

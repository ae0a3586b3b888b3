"""The Kafka side of monitord: an idempotent producer whose delivery reports become awaitables.

librdkafka is driven by one background thread that calls ``poll()``; delivery reports collected in
one poll are handed to the event loop in a single ``call_soon_threadsafe``, so the loop is never
blocked on Kafka and is woken once per batch, not once per record. A record's future resolves only
when Kafka confirmed it (``acks=all``) -- that is what the agent's ack waits for.

The same hand-overs (and one about every second while idle) feed :class:`KafkaHealth`, which
decides whether Kafka is up, degraded or down (:mod:`monitord.kafka_state`); cluster metadata comes
from a :class:`ClusterWatch` on its own thread. librdkafka's error callbacks only log.
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
from confluent_kafka.admin import AdminClient

from monitord.config import KafkaSection
from monitord.errors import DeliveryError, ProducerClosed
from monitord.kafka_clients import ProducerFactory, QueueingProducer, librdkafka_logger, producer_config
from monitord.kafka_cluster import AdminFactory, ClusterWatch
from monitord.kafka_state import ClusterReport, KafkaHealth, KafkaState, KafkaStatus, announce
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

#: Idle polls (0.1 s each) between two evaluations of the Kafka state.
_TICK_POLLS = 10


class KafkaProducerBridge:
    """Owns the producer and its poll thread; ``produce()`` returns a delivery future."""

    def __init__(
        self,
        cfg: KafkaSection,
        *,
        client_id: str,
        producer_factory: ProducerFactory | None = None,
        admin_factory: AdminFactory | None = None,
        on_state_change: Callable[[KafkaStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self._factory: ProducerFactory = producer_factory or confluent_kafka.Producer  # type: ignore[assignment]
        # A fake producer comes with its own metadata source or none (then: no metadata probes).
        self._admin_factory = admin_factory
        if producer_factory is None and admin_factory is None:
            self._admin_factory = AdminClient
        self._watch: ClusterWatch | None = None
        self._on_state_change = on_state_change
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: QueueingProducer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self._reports: list[tuple[asyncio.Future[None], KafkaError | None]] = []
        self.kafka = KafkaHealth(down_after=cfg.down_after_seconds, up_after=cfg.up_after_seconds, now=clock())
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
        if self._admin_factory is not None:
            self._watch = ClusterWatch.of(self._cfg, self._admin_factory, self._client_id, self._cluster_report)
            self._watch.start()

    async def close(self, timeout: float) -> int:
        """Flush what is queued (up to ``timeout`` s), stop the thread; returns records left unsent."""
        if self._closed:
            return 0
        self._closed = True
        self._flush_seconds = timeout
        self._stop.set()
        watcher = self._watch.stop() if self._watch is not None else None
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            await loop.run_in_executor(None, self._thread.join, timeout + 5)
        if watcher is not None:  # it may be inside a metadata request (bounded by its timeout)
            await loop.run_in_executor(None, watcher.join, timeout + 1)
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
        reports, latency, clock = self._reports, self.delivery_latency, self._clock
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
        self.kafka.sent(handed)
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
    def kafka_up(self) -> bool:
        """Kafka is not down (degraded counts as up): what gRPC health reports."""
        return self.kafka.state is not KafkaState.DOWN

    def kafka_status(self) -> KafkaStatus:
        """The Kafka state now, with its reason (STATUS=, /metrics)."""
        return self.kafka.status(self._clock())

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
        idle = 0
        while not self._stop.is_set():
            producer.poll(0.1)
            self.last_poll = time.monotonic()
            idle = 0 if self._hand_over(loop, tick=idle >= _TICK_POLLS) else idle + 1
        producer.flush(self._flush_seconds)
        self._hand_over(loop, tick=False)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, *, tick: bool) -> bool:
        """Pass the delivery reports (or, on a ``tick``, none) to the loop; whether it was called."""
        if not self._reports and not tick:
            return False
        # Delivery callbacks run inside poll() on this thread, so taking the list here is safe.
        batch = self._reports.copy()
        self._reports.clear()
        self._call_soon(loop, self._settle, batch)
        return True

    @staticmethod
    def _call_soon(loop: asyncio.AbstractEventLoop | None, callback: Callable[..., None], *args: object) -> None:
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during interpreter shutdown
                loop.call_soon_threadsafe(callback, *args)

    def _settle(self, batch: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
        answered = failed = 0
        for fut, err in batch:
            if err is None:
                self.delivered += 1
                answered += 1
                if not fut.done():
                    fut.set_result(None)
            else:
                self.failed += 1
                retriable = err.code() not in _PERMANENT
                failed += retriable  # a permanent refusal is an answer: Kafka is there
                answered += not retriable
                if not fut.done():
                    fut.set_exception(DeliveryError(f"Kafka delivery failed: {err.str()}", retriable=retriable))
        now = self._clock()
        self.kafka.settled(now, answered, failed)
        self._evaluate(now)

    def _cluster_report(self, report: ClusterReport | None) -> None:  # on the metadata thread
        self._call_soon(self._loop, self._on_cluster, report)

    def _on_cluster(self, report: ClusterReport | None) -> None:
        now = self._clock()
        self.kafka.cluster(now, report)
        self._evaluate(now)

    def _on_fatal(self, detail: str) -> None:
        now = self._clock()
        self.kafka.fatal(now, detail)
        self._evaluate(now)

    def _evaluate(self, now: float) -> None:
        change = self.kafka.evaluate(now)
        if change is not None:
            announce(change)
            if self._on_state_change is not None:
                self._on_state_change(self.kafka.status(now))

    def _on_error(self, err: KafkaError) -> None:
        # Called from poll() on the poll thread. Connection errors (one broker, or all of them) say
        # nothing about whether records are confirmed: the state comes from confirmations and metadata.
        if err.fatal():
            log.critical("Kafka producer fatal error: %s", err.str())
            self._call_soon(self._loop, self._on_fatal, err.str())
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            log.debug("Kafka connection error: %s", err.str())
        else:
            log.warning("Kafka client error: %s", err.str())

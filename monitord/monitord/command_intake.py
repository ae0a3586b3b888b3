"""The Kafka consumer behind command routing: ``commands``, ``command-responses`` and
``agent-status``, no polling of agents -- records are pushed to the router the moment librdkafka
has them.

No consumer group and no committed offsets: each instance assigns every partition itself, so a
restarted instance reads at once (it never waits for a crashed predecessor to leave a group). On
start it replays ``commands`` and ``command-responses`` from ``max_ttl_seconds`` ago up to their
ends, which rebuilds the held commands and the answers owed from Kafka alone; the router pushes
and answers only once the replay is done (:attr:`CommandIntake.ready`). ``agent-status`` is read
from its end, for the presence guard. librdkafka is driven by one thread; each batch it fetched is
handed to the event loop in one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import confluent_kafka

from monitord import records
from monitord.answer_duty import AnswerDuty
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.kafka_clients import CommandsConsumerFactory, librdkafka_logger, reader_config
from monitord.stats import IntakeStats
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)

#: One consumed record: topic, partition, offset, Kafka timestamp (s), key, value, headers.
Row = tuple[str, int, int, float, bytes | None, bytes | None, records.Headers | None]
Partition = tuple[str, int]
#: How long start-up waits for the replay (READY=1 comes after it, or after this).
REPLAY_WAIT_SECONDS = 20.0
#: How often the partition counts of the topics read are checked (partitions can be added).
RECHECK_PARTITIONS_SECONDS = 30.0
#: Batches handed to the event loop and not yet dispatched: the thread waits beyond this, so a
#: busy loop bounds what is read ahead (librdkafka's prefetch is bounded by its own setting).
HANDOFF_BATCHES = 2


def _names(partitions: list[Any]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]


def consumer_config(cfg: MonitordConfig) -> dict[str, Any]:
    """Low-latency reader settings (fetch.wait.max.ms is the command delivery latency floor)."""
    conf = reader_config(cfg.kafka, f"monitord-{cfg.server.effective_server_id}-commands")
    conf |= {
        "fetch.wait.max.ms": cfg.commands.fetch_wait_max_ms,
        "fetch.min.bytes": 1,
        "socket.nagle.disable": True,
        # What librdkafka prefetches is memory a flood of large records could fill: bounded.
        "queued.max.messages.kbytes": 8_192,
        "logger": librdkafka_logger("commands-consumer"),
    }
    return conf


class CommandIntake:
    """Consumes commands, responses and presence in a thread and feeds the router on the loop."""

    def __init__(
        self,
        cfg: MonitordConfig,
        router: CommandRouter,
        consumer_factory: CommandsConsumerFactory | None = None,
        on_presence: Callable[[pb.AgentStatus], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._router = router
        self._factory: CommandsConsumerFactory = consumer_factory or confluent_kafka.Consumer
        self._on_presence = on_presence
        self._duty = AnswerDuty(cfg, router.set_owned, self._factory)
        self._stop = threading.Event()
        self._handoff = threading.Semaphore(HANDOFF_BATCHES)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry: asyncio.Task[None] | None = None
        #: Set once the replay reached the ends of commands and command-responses.
        self.ready = asyncio.Event()
        self.stats = IntakeStats()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="commands-consumer", daemon=True)
        self._thread.start()
        self._duty.start()
        self._expiry = self._loop.create_task(self._router.run_expiry(), name="command-expiry")

    async def wait_ready(self, timeout: float = REPLAY_WAIT_SECONDS) -> bool:
        """Wait up to ``timeout`` s for the end of the replay; whether it ended."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            log.warning("Commands replay not done after %gs (Kafka unreachable?); it goes on", timeout)
            return False
        return True

    async def close(self) -> None:
        self._stop.set()
        if self._expiry is not None:
            self._expiry.cancel()
        await self._duty.close()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 15)

    # -- consumer thread ---------------------------------------------------------------------------

    def _partitions(self, consumer: Any, topic: str, *, wait: bool = True) -> list[int]:
        """The partitions of ``topic``, waiting (bounded per try, until stopped) for Kafka and the
        topic, or (``wait`` false) asking once."""
        warned = False
        while not self._stop.is_set():
            try:
                found = consumer.list_topics(topic, timeout=5).topics.get(topic)
                if found is not None and found.error is None and found.partitions:
                    return sorted(found.partitions)
                problem = str(found.error) if found is not None else "unknown topic"
            except confluent_kafka.KafkaException as exc:
                problem = str(exc)
            if not wait:
                log.warning("Commands consumer: not reading topic %s (%s)", topic, problem)
                return []
            if not warned:
                log.warning("Commands consumer: waiting for topic %s (%s)", topic, problem)
                warned = True
            self._stop.wait(1.0)
        return []

    def _plan(self, consumer: Any) -> tuple[list[Any], dict[Partition, int]]:
        """Where each partition starts, and the end each replayed partition must reach."""
        topics = self._cfg.kafka.topics
        since_ms = int((time.time() - self._cfg.commands.max_ttl_seconds) * 1000)
        assignment: list[Any] = []
        targets: dict[Partition, int] = {}
        for topic in (topics.commands, topics.command_responses):
            wanted = [confluent_kafka.TopicPartition(topic, p, since_ms) for p in self._partitions(consumer, topic)]
            for tp in consumer.offsets_for_times(wanted, timeout=10) if wanted else []:
                end = consumer.get_watermark_offsets(tp, timeout=10)[1]
                tp.offset = end if tp.offset < 0 else tp.offset
                if tp.offset < end:
                    targets[(topic, tp.partition)] = end
                assignment.append(tp)
        for p in self._partitions(consumer, topics.agent_status, wait=False) if self._on_presence else []:
            assignment.append(confluent_kafka.TopicPartition(topics.agent_status, p, confluent_kafka.OFFSET_END))
        return assignment, targets

    def _planned(self, consumer: Any) -> tuple[list[Any], dict[Partition, int]]:
        """:meth:`_plan`, asked again (every second, until stopped) while Kafka fails the request:
        a broker of the cluster down at start must not leave this server without commands."""
        while True:
            try:
                return self._plan(consumer)
            except confluent_kafka.KafkaException as exc:
                log.warning("Commands consumer: cannot plan the replay yet (%s); trying again", exc)
                if self._stop.wait(1.0):
                    return [], {}

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        consumer = self._factory(consumer_config(self._cfg))
        try:
            assignment, targets = self._planned(consumer)
            if self._stop.is_set():
                return
            consumer.assign(assignment)
            replayed = 0
            log.info(
                "Commands consumer reads %d partitions; replaying %d of them (the last %gs)",
                len(assignment),
                len(targets),
                self._cfg.commands.max_ttl_seconds,
            )
            announced, recheck = False, time.monotonic() + RECHECK_PARTITIONS_SECONDS
            while not self._stop.is_set():
                if time.monotonic() >= recheck:  # partitions added while running are read too
                    recheck = time.monotonic() + RECHECK_PARTITIONS_SECONDS
                    assignment += self._grown(consumer, assignment)
                # poll() returns as soon as one record is there (consume() would wait out its
                # timeout for a full batch); then take whatever else is already fetched.
                first = consumer.poll(0.1)
                rows = self._rows([first, *consumer.consume(500, timeout=0)] if first is not None else [])
                for row in rows:
                    if targets.get((row[0], row[1]), 0) <= row[2] + 1:
                        targets.pop((row[0], row[1]), None)
                if first is None and targets:  # the end may be a gap (compaction): ask where we are
                    self._reached(consumer, targets)
                replayed += 0 if announced else len(rows)
                if rows:
                    while not self._handoff.acquire(timeout=0.2):
                        if self._stop.is_set():
                            return
                    loop.call_soon_threadsafe(self._dispatch, rows)
                if not announced and not targets:
                    announced = True
                    loop.call_soon_threadsafe(self._caught_up, len(assignment), replayed)
        except Exception:  # the thread must not die silently
            log.exception("Commands consumer failed")
        finally:
            consumer.close()

    def _grown(self, consumer: Any, assignment: list[Any]) -> list[Any]:
        """Partitions the topics read gained since they were assigned, now read from their start."""
        known = {(tp.topic, tp.partition) for tp in assignment}
        added = []
        for topic in sorted({tp.topic for tp in assignment}):
            try:
                found = consumer.list_topics(topic, timeout=2).topics.get(topic)
            except confluent_kafka.KafkaException:
                continue  # Kafka away: ask again next time
            for p in sorted(found.partitions if found is not None and found.error is None else ()):
                if (topic, p) not in known:
                    added.append(confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING))
        if added:
            log.info("Commands consumer: new partitions %s, read from their start", ", ".join(_names(added)))
            consumer.incremental_assign(added)
        return added

    @staticmethod
    def _reached(consumer: Any, targets: dict[Partition, int]) -> None:
        wanted = [confluent_kafka.TopicPartition(t, p) for t, p in targets]
        for tp in consumer.position(wanted):
            if tp.offset >= targets[(tp.topic, tp.partition)]:
                del targets[(tp.topic, tp.partition)]

    @staticmethod
    def _rows(messages: list[Any]) -> list[Row]:
        rows: list[Row] = []
        for msg in messages:
            if msg.error():
                log.warning("Commands consumer: %s", msg.error())
                continue
            kind, ms = msg.timestamp()
            at = ms / 1000 if kind != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else time.time()
            rows.append((msg.topic(), msg.partition(), msg.offset(), at, msg.key(), msg.value(), msg.headers()))
        return rows

    # -- on the event loop -------------------------------------------------------------------------

    def _caught_up(self, partitions: int, replayed: int) -> None:
        self.stats.partitions_assigned = partitions
        self.stats.replayed = replayed
        self._router.replay_done()
        log.info("Commands consumer caught up: %d records replayed; delivering", replayed)
        self.ready.set()

    def _dispatch(self, rows: list[Row]) -> None:
        try:
            self._dispatch_rows(rows)
        finally:
            self._handoff.release()

    def _dispatch_rows(self, rows: list[Row]) -> None:
        topics = self._cfg.kafka.topics
        for topic, partition, offset, at, key, value, headers in rows:
            if topic == topics.commands:
                self._router.on_record(key, value, headers, partition=partition, offset=offset, written_at=at)
                continue
            try:
                message = records.decode(key, value, headers).message
            except records.RecordDecodeError:
                continue
            if isinstance(message, pb.CommandResponseMessage) and topic == topics.command_responses:
                self._router.on_response(message, from_kafka=True)
            elif isinstance(message, pb.AgentStatus) and self._on_presence is not None:
                self._on_presence(message)

"""The Kafka consumer behind command routing: ``commands`` and ``command-responses``, no polling
of agents -- records are pushed to the router the moment librdkafka has them.

Each instance uses its own consumer group (``<prefix>.<server id>``), so every instance sees every
command; a restarted instance resumes from its committed offsets. librdkafka is driven by one
thread; each batch it fetched is handed to the event loop in one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import confluent_kafka

from monitord import records
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig
from monitord.kafka_clients import PositioningConsumerFactory, group_consumer_config, librdkafka_logger
from monitord.stats import IntakeStats
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)

Batch = list[tuple[str, bytes | None, bytes | None, records.Headers | None]]


def consumer_config(cfg: MonitordConfig) -> dict[str, Any]:
    """Low-latency consumer settings (fetch.wait.max.ms is the command delivery latency floor)."""
    conf = group_consumer_config(
        cfg.kafka,
        group_id=f"{cfg.commands.consumer_group_prefix}.{cfg.server.effective_server_id}",
        client_id=f"monitord-{cfg.server.effective_server_id}-commands",
        offset_reset="latest",
    )
    conf |= {
        "fetch.wait.max.ms": cfg.commands.fetch_wait_max_ms,
        "fetch.min.bytes": 1,
        "socket.nagle.disable": True,
        "logger": librdkafka_logger("commands-consumer"),
    }
    return conf


class CommandIntake:
    """Consumes commands and responses in a thread and feeds the router on the loop."""

    def __init__(
        self, cfg: MonitordConfig, router: CommandRouter, consumer_factory: PositioningConsumerFactory | None = None
    ) -> None:
        self._cfg = cfg
        self._router = router
        self._factory: PositioningConsumerFactory = consumer_factory or confluent_kafka.Consumer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.assigned = asyncio.Event()
        self.stats = IntakeStats()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="commands-consumer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 15)

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        topics = self._cfg.kafka.topics
        consumer = self._factory(consumer_config(self._cfg))

        def on_assign(_consumer: Any, partitions: list[Any]) -> None:
            # Pin where a partition without a committed offset starts (its current end) now,
            # rather than when the first fetch happens: a command produced after this line is
            # logged is never skipped by auto.offset.reset=latest.
            positioned = consumer.committed(partitions, timeout=10)
            for tp in positioned:
                if tp.offset < 0:
                    tp.offset = consumer.get_watermark_offsets(tp, timeout=10)[1]
            consumer.assign(positioned)
            log.info(
                "Commands consumer assigned %d partitions (%s, %s)",
                len(partitions),
                topics.commands,
                topics.command_responses,
            )
            loop.call_soon_threadsafe(self._assigned, len(positioned))

        consumer.subscribe([topics.commands, topics.command_responses], on_assign=on_assign)
        try:
            while not self._stop.is_set():
                # poll() returns as soon as one record is there (consume() would wait out its
                # timeout for a full batch); then take whatever else is already fetched.
                first = consumer.poll(0.1)
                if first is None:
                    continue
                messages = [first, *consumer.consume(500, timeout=0)]
                batch: Batch = []
                for msg in messages:
                    if msg.error():
                        log.warning("Commands consumer: %s", msg.error())
                        continue
                    batch.append((msg.topic(), msg.key(), msg.value(), msg.headers()))
                if batch:
                    loop.call_soon_threadsafe(self._dispatch, batch)
        except Exception:  # the thread must not die silently
            log.exception("Commands consumer failed")
        finally:
            consumer.close()

    def _assigned(self, partitions: int) -> None:
        self.stats.partitions_assigned = partitions
        self.assigned.set()

    def _dispatch(self, batch: Batch) -> None:
        commands_topic = self._cfg.kafka.topics.commands
        for topic, key, value, headers in batch:
            if topic == commands_topic:
                self._router.on_record(key, value, headers)
                continue
            try:
                decoded = records.decode(key, value, headers)
            except records.RecordDecodeError:
                continue
            if isinstance(decoded.message, pb.CommandResponseMessage):
                self._router.on_response(decoded.message)

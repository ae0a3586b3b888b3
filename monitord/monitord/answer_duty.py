"""Whose turn it is to write monitord's own answers (EXPIRED, INVALID) for each partition of
``commands``: the members of one consumer group shared by all instances divide the partitions.

Every instance reads every command itself (:mod:`monitord.command_intake`); this group only hands
out duties, so its consumer never fetches a record (its partitions are paused). Members are static
(``group.instance.id`` = server id): an instance restarted under the same id gets its partitions
back at once, and a crashed one's partitions move to the others after ``duty_session_timeout_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from monitord.config import MonitordConfig
from monitord.kafka_clients import CommandsConsumerFactory, group_consumer_config, librdkafka_logger

log = logging.getLogger(__name__)


def duty_config(cfg: MonitordConfig) -> dict[str, Any]:
    server_id = cfg.server.effective_server_id
    conf = group_consumer_config(
        cfg.kafka,
        group_id=cfg.commands.consumer_group_prefix,
        client_id=f"monitord-{server_id}-duty",
        offset_reset="latest",
    )
    conf |= {
        "group.instance.id": server_id,
        "session.timeout.ms": cfg.commands.duty_session_timeout_ms,
        "heartbeat.interval.ms": max(1000, cfg.commands.duty_session_timeout_ms // 5),
        "enable.auto.commit": False,
        "logger": librdkafka_logger("duty-consumer"),
    }
    return conf


class AnswerDuty:
    """A thread keeping this instance's membership; ``on_change`` gets the owned partitions on the loop."""

    def __init__(
        self,
        cfg: MonitordConfig,
        on_change: Callable[[frozenset[int]], None],
        consumer_factory: CommandsConsumerFactory,
    ) -> None:
        self._cfg = cfg
        self._on_change = on_change
        self._factory = consumer_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="commands-duty", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 15)

    def _report(self, partitions: frozenset[int]) -> None:
        assert self._loop is not None
        log.info(
            "Commands: this instance answers for %d partitions of %s (%s)",
            len(partitions),
            self._cfg.kafka.topics.commands,
            ",".join(map(str, sorted(partitions))) or "none",
        )
        self._loop.call_soon_threadsafe(self._on_change, partitions)

    def _run(self) -> None:
        consumer = self._factory(duty_config(self._cfg))

        def on_assign(_consumer: Any, partitions: list[Any]) -> None:
            consumer.assign(partitions)
            consumer.pause(partitions)  # duties only: the records are read by the intake
            self._report(frozenset(tp.partition for tp in partitions))

        def on_revoke(_consumer: Any, _partitions: list[Any]) -> None:
            self._report(frozenset())
            consumer.unassign()

        consumer.subscribe([self._cfg.kafka.topics.commands], on_assign=on_assign, on_revoke=on_revoke)
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is not None and message.error():
                    log.warning("Commands duty consumer: %s", message.error())
        except Exception:  # the thread must not die silently
            log.exception("Commands duty consumer failed")
        finally:
            consumer.close()

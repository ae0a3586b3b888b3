"""Every Kafka client of monitord, monitor-analyzer and monitorctl is configured and made here.

Clients are made by factories passed in (``confluent_kafka.Producer``/``Consumer`` for real, fakes
in unit tests); the protocols below name exactly the part of confluent-kafka each user relies on.
All clients start from :func:`kafka_client_settings` (``kafka.client`` plus the secrets file), so
security settings are written once for every tool.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from monitord.config import KafkaSection
from monitoring_common.config_loader import ConfigError


class MessageLike(Protocol):
    """The part of ``confluent_kafka.Message`` we read."""

    def error(self) -> Any: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


class MetadataSource(Protocol):
    """Any client that can describe topics (consumer and producer alike)."""

    def list_topics(self, topic: str, timeout: float) -> Any: ...


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` monitord's bridge and the command producers use.

    Delivery callbacks run inside ``poll()``/``flush()``, on the thread that calls them.
    """

    def produce(self, topic: str, *, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


class ReportingProducer(ProducerLike, MetadataSource, Protocol):
    """A producer that can also describe topics (monitorctl checks the topic before sending)."""


class QueueingProducer(ProducerLike, Protocol):
    """A producer whose length is its local queue (monitord's bridge reports and bounds it)."""

    def __len__(self) -> int: ...


class ConsumerLike(MetadataSource, Protocol):
    """A reader that assigns partitions itself (monitorctl: no group, no commits)."""

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int] | None: ...
    def assign(self, partitions: list[Any]) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> Sequence[MessageLike]: ...
    def close(self) -> None: ...


class GroupConsumerLike(Protocol):
    """A consumer in a consumer group (monitord's commands intake, the analyzer)."""

    def subscribe(self, topics: list[str], on_assign: Any = ...) -> None: ...
    def poll(self, timeout: float) -> Any: ...
    def close(self) -> None: ...


class CommandsConsumerLike(MetadataSource, Protocol):
    """monitord's command consumers: a reader that replays by time, and a paused group member."""

    def subscribe(self, topics: list[str], on_assign: Any = ..., on_revoke: Any = ...) -> None: ...
    def poll(self, timeout: float) -> Any: ...
    def consume(self, num_messages: int, timeout: float) -> Sequence[Any]: ...
    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]: ...
    def assign(self, partitions: list[Any]) -> None: ...
    def close(self) -> None: ...
    def offsets_for_times(self, partitions: list[Any], timeout: float) -> list[Any]: ...
    def position(self, partitions: list[Any]) -> list[Any]: ...
    def pause(self, partitions: list[Any]) -> None: ...
    def unassign(self) -> None: ...
    def incremental_assign(self, partitions: list[Any]) -> None: ...


ProducerFactory = Callable[[dict[str, Any]], QueueingProducer]
ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]
GroupConsumerFactory = Callable[[dict[str, Any]], GroupConsumerLike]
CommandsConsumerFactory = Callable[[dict[str, Any]], CommandsConsumerLike]


def kafka_client_settings(kafka: KafkaSection) -> dict[str, str]:
    """``kafka.client`` plus the secrets file: what every Kafka client of ours starts from.

    Raises :class:`ConfigError` naming the secrets file if it is unreadable or not a flat mapping.
    """
    settings = dict(kafka.client)
    if kafka.secrets_file:
        path = kafka.secrets_file
        try:
            mode = os.stat(path).st_mode
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(path, None, "", f"cannot read Kafka secrets: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, (str, int, float, bool)) for v in data.values()):
            raise ConfigError(path, None, "", "expected a mapping of librdkafka property to value")
        if mode & stat.S_IROTH:
            logging.getLogger(__name__).warning(
                "Kafka secrets file %s is readable by other users (mode %o): chmod o-r it", path, stat.S_IMODE(mode)
            )
        settings.update({str(k): str(v) for k, v in data.items()})
    return settings


def error_text(error: object) -> str:
    """The readable text of a KafkaError (its ``str()`` method), not the ``KafkaError{...}`` repr."""
    method = getattr(error, "str", None)
    return str(method()) if callable(method) else str(error)


def exception_text(exc: BaseException) -> str:
    """The readable text of a ``KafkaException`` (the KafkaError it carries)."""
    return error_text(exc.args[0] if exc.args else exc)


class _CapAtWarning(logging.Filter):
    """librdkafka logs every failed connection attempt at error level; monitord reports the state
    change itself (once), so the client's own lines are capped at warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def librdkafka_logger(name: str) -> logging.Logger:
    """The logger handed to one of monitord's librdkafka clients (``logger`` config property)."""
    logger = logging.getLogger(f"monitord.librdkafka.{name}")
    if not logger.filters:
        logger.addFilter(_CapAtWarning())
    return logger


def producer_config(cfg: KafkaSection, client_id: str) -> dict[str, Any]:
    """librdkafka properties: idempotent, acks=all, bounded delivery time; extras passed through."""
    conf: dict[str, Any] = {
        **kafka_client_settings(cfg),
        "bootstrap.servers": cfg.bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": cfg.linger_ms,
        "compression.type": cfg.compression,
        "message.timeout.ms": cfg.delivery_timeout_ms,
        "queue.buffering.max.messages": cfg.queue_max_messages,
        "socket.keepalive.enable": True,
    }
    conf.update(cfg.producer)
    return conf


def group_consumer_config(
    cfg: KafkaSection, *, group_id: str, client_id: str, offset_reset: Literal["earliest", "latest"]
) -> dict[str, Any]:
    """A consumer in group ``group_id`` committing its offsets automatically."""
    return {
        **kafka_client_settings(cfg),
        "bootstrap.servers": cfg.bootstrap_servers,
        "group.id": group_id,
        "client.id": client_id,
        "auto.offset.reset": offset_reset,
        "enable.auto.commit": True,
    }


def reader_config(cfg: KafkaSection, client_id: str) -> dict[str, Any]:
    """A consumer that assigns partitions itself and never commits."""
    # group.id is required by the client but unused: we assign, never subscribe or commit.
    return {
        **kafka_client_settings(cfg),
        "bootstrap.servers": cfg.bootstrap_servers,
        "group.id": client_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


@dataclass(frozen=True)
class KafkaClients:
    """Makes configured readers and producers for the tools; ``timeout`` bounds each metadata request."""

    kafka: KafkaSection
    consumer_factory: ConsumerFactory
    producer_factory: Callable[[dict[str, Any]], ReportingProducer]
    client_id: str = "monitorctl"
    timeout: float = 10.0
    #: Where librdkafka's own log lines go (None: librdkafka prints them to stderr itself).
    logger: logging.Logger | None = None

    @classmethod
    def real(cls, kafka: KafkaSection, client_id: str, logger: logging.Logger | None = None) -> KafkaClients:
        """Clients backed by confluent-kafka."""
        import confluent_kafka

        return cls(kafka, confluent_kafka.Consumer, confluent_kafka.Producer, client_id, logger=logger)

    def consumer(self) -> ConsumerLike:
        conf = reader_config(self.kafka, self.client_id)
        if self.logger is not None:
            conf["logger"] = self.logger
        return self.consumer_factory(conf)

    def producer(self) -> ReportingProducer:
        """Idempotent, acks=all, with ``kafka.producer`` pass-through properties (as monitord's)."""
        conf = producer_config(self.kafka, self.client_id)
        if self.logger is not None:
            conf["logger"] = self.logger
        return self.producer_factory(conf)

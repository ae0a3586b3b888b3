"""A fake admin client for the Kafka state's metadata watch (:mod:`monitord.kafka_cluster`).

It answers with confluent-kafka's own metadata and config classes, built from a plain description
a test changes while monitord runs: ``partitions[topic] = [(leader, replicas, isrs), ...]``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    ClusterMetadata,
    ConfigEntry,
    PartitionMetadata,
    TopicMetadata,
)

#: (leader, replicas, in-sync replicas) of one partition.
Partition = tuple[int, list[int], list[int]]


def healthy(count: int = 3) -> list[Partition]:
    """``count`` partitions on brokers 1-3, every replica in sync."""
    return [(1 + p % 3, [1, 2, 3], [1, 2, 3]) for p in range(count)]


class FakeAdmin:
    """``list_topics`` and ``describe_configs`` from :attr:`partitions` and :attr:`min_isr`."""

    def __init__(self, conf: dict[str, Any], partitions: Mapping[str, list[Partition]]) -> None:
        self.conf = conf
        self.partitions = dict(partitions)
        self.min_isr: dict[str, int] = dict.fromkeys(partitions, 2)
        #: While set, metadata requests fail as if no broker answered.
        self.unreachable = False
        #: While set, describe_configs fails (no DescribeConfigs permission).
        self.configs_denied = False
        self.metadata_requests = 0
        self.config_requests = 0
        self._lock = threading.Lock()

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        with self._lock:
            self.metadata_requests += 1
            if self.unreachable:
                raise KafkaException(
                    KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure")
                )
            metadata = ClusterMetadata()
            for name, parts in self.partitions.items():
                topic_md = TopicMetadata()
                topic_md.topic = name
                for pid, (leader, replicas, isrs) in enumerate(parts):
                    part = PartitionMetadata()
                    part.id, part.leader, part.replicas, part.isrs = pid, leader, list(replicas), list(isrs)
                    topic_md.partitions[pid] = part
                metadata.topics[name] = topic_md
            return metadata

    def describe_configs(self, resources: list[Any], **_kwargs: Any) -> dict[Any, Future[dict[str, Any]]]:
        with self._lock:
            self.config_requests += 1
            if self.configs_denied:
                raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
            answers: dict[Any, Future[dict[str, Any]]] = {}
            for resource in resources:
                future: Future[dict[str, Any]] = Future()
                value = self.min_isr.get(resource.name)
                future.set_result(
                    {} if value is None else {"min.insync.replicas": ConfigEntry("min.insync.replicas", str(value))}
                )
                answers[resource] = future
            return answers


class AdminFactory:
    """``admin_factory=`` for the bridge; every admin it makes shares one cluster description."""

    def __init__(self, partitions: Mapping[str, list[Partition]]) -> None:
        self._partitions = partitions
        self.made: list[FakeAdmin] = []

    def __call__(self, conf: dict[str, Any]) -> FakeAdmin:
        self.made.append(FakeAdmin(conf, self._partitions))
        return self.made[-1]

    @property
    def admin(self) -> FakeAdmin:
        return self.made[0]

"""Cluster metadata for the Kafka state: do the partitions monitord writes to have a leader and
enough in-sync replicas?

A daemon thread asks an admin client every ``interval`` seconds (``list_topics``, and
``describe_configs`` for each topic's ``min.insync.replicas``, re-read every few minutes) and hands
each :class:`~monitord.kafka_state.ClusterReport` -- or None when no broker answered -- to
``deliver``; the bridge moves it onto the event loop, which never waits for a metadata request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]  # no __all__

from monitord.config import KafkaSection
from monitord.kafka_clients import kafka_client_settings, librdkafka_logger
from monitord.kafka_state import ClusterReport

log = logging.getLogger(__name__)

#: Probes between two reads of the topics' ``min.insync.replicas`` (it rarely changes; while some
#: partitions are under it, it is read at every probe, so that a lowered value ends the state).
MIN_ISR_EVERY = 60


class AdminLike(Protocol):
    """The part of ``confluent_kafka.admin.AdminClient`` the watch uses."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def describe_configs(self, resources: list[Any], **kwargs: Any) -> Mapping[Any, Any]: ...


AdminFactory = Callable[[dict[str, Any]], AdminLike]


def report_from(metadata: Any, topics: Sequence[str], min_isr: Mapping[str, int]) -> ClusterReport:
    """Count the problem partitions of ``topics`` in a ``ClusterMetadata``. As the broker does
    (Kafka 4.1 accepts ``acks=all`` writes to a one-replica topic with ``min.insync.replicas=2``),
    the minimum is capped at the partition's replica count; unknown, it is 1 (only an empty ISR is
    under it)."""
    partitions = no_leader = under_min = under_replicated = 0
    missing = []
    for name in topics:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            missing.append(name)
            continue
        for part in topic.partitions.values():
            partitions += 1
            no_leader += part.leader < 0
            under_min += len(part.isrs) < min(min_isr.get(name, 1), max(1, len(part.replicas)))
            under_replicated += len(part.isrs) < len(part.replicas)
    return ClusterReport(partitions, no_leader, under_min, under_replicated, tuple(missing))


class ClusterWatch:
    """Probes the cluster on its own thread; :meth:`probe` is the synchronous step (tests call it)."""

    def __init__(
        self,
        admin: AdminLike,
        topics: Sequence[str],
        *,
        interval: float,
        deliver: Callable[[ClusterReport | None], None],
    ) -> None:
        self._admin, self._topics, self._interval, self._deliver = admin, tuple(topics), interval, deliver
        self._timeout = max(1.0, min(interval, 10.0))
        self._min_isr: dict[str, int] = {}
        self._probes = 0
        self._under_min = False
        self._warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def of(
        cls, cfg: KafkaSection, factory: AdminFactory, client_id: str, deliver: Callable[[ClusterReport | None], None]
    ) -> ClusterWatch:
        """A watch of the topics monitord writes to, with its own admin client made by ``factory``."""
        conf: dict[str, Any] = {**kafka_client_settings(cfg), "bootstrap.servers": cfg.bootstrap_servers}
        conf |= {"client.id": f"{client_id}-metadata", "logger": librdkafka_logger("metadata")}
        topics = (cfg.topics.metrics, cfg.topics.agent_status, cfg.topics.command_responses)
        return cls(factory(conf), topics, interval=cfg.metadata_interval_seconds, deliver=deliver)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-metadata", daemon=True)
        self._thread.start()

    def stop(self) -> threading.Thread | None:
        """Ask the thread to end (it may be inside a request: join it off the event loop)."""
        self._stop.set()
        return self._thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self._deliver(self.probe())
            self._stop.wait(self._interval)

    def probe(self) -> ClusterReport | None:
        """One metadata request (and, now and then, the topics' configs); None if it failed."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
        except Exception as exc:  # KafkaException: no broker answered in time
            log.debug("Kafka metadata request failed: %s", exc)
            return None
        if self._probes % MIN_ISR_EVERY == 0 or not self._min_isr or self._under_min:
            self._read_min_isr()
        self._probes += 1
        report = report_from(metadata, self._topics, self._min_isr)
        self._under_min = report.under_min_isr > 0
        return report

    def _read_min_isr(self) -> None:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in self._topics]
        try:
            futures = self._admin.describe_configs(resources, request_timeout=self._timeout)
            for resource, future in futures.items():
                entry = future.result(timeout=self._timeout).get("min.insync.replicas")
                if entry is not None and entry.value is not None:
                    self._min_isr[resource.name] = int(entry.value)
        except Exception as exc:  # no DescribeConfigs permission, a timeout: keep what we know
            if not self._warned:
                self._warned = True
                log.warning(
                    "Cannot read min.insync.replicas of the topics (%s): only partitions without leader count", exc
                )

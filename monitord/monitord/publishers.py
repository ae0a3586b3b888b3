"""monitord's own records: agent presence and the command answers monitord gives itself.

Presence goes to the compacted ``agent-status`` topic (key = agent id): the latest record per
agent says whether it is connected and to which monitord instance; that is what ``monitorctl
agents`` shows. Each record carries the agent's connection number, which orders the records of
one agent across servers (:mod:`monitord.presence_order`). The answers monitord gives commands
itself (EXPIRED, INVALID) go to ``command-responses`` like the agents' own. Publishing never blocks a stream: it runs in the
background and a failed publish is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from monitord import records
from monitord.config import KafkaSection
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


class BackgroundProducer(Protocol):
    """Where publishers hand records (:class:`monitord.kafka_bridge.KafkaProducerBridge`)."""

    def publish_soon(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        what: str,
        on_failure: Callable[[], None] | None = None,
    ) -> None: ...


class PresencePublisher:
    """Turns session events into AgentStatus records."""

    def __init__(self, bridge: BackgroundProducer, kafka: KafkaSection, server_id: str) -> None:
        self._bridge = bridge
        self._kafka = kafka
        self._server_id = server_id

    @property
    def server_id(self) -> str:
        """The monitord instance its records name."""
        return self._server_id

    def publish(
        self,
        agent_id: str,
        state: pb.AgentPresence.ValueType,
        *,
        reason: str = "",
        peer: str = "",
        hostname: str = "",
        agent_version: str = "",
        instance_id: str = "",
        connection: int = 0,
        at: float | None = None,
    ) -> None:
        """Publish ``state`` of ``agent_id``'s connection number ``connection``, dated ``at`` (default now)."""
        status = pb.AgentStatus(
            agent_id=agent_id,
            state=state,
            reason=reason,
            server_id=self._server_id,
            peer=peer,
            hostname=hostname,
            agent_version=agent_version,
            instance_id=instance_id,
            connection=connection,
        )
        if at is None:
            status.at.GetCurrentTime()
        else:
            status.at.FromNanoseconds(int(at * 1e9))
        key, value, headers = records.encode(
            status, agent_id=agent_id, server_id=self._server_id, encoding=self._kafka.value_encoding
        )
        self._bridge.publish_soon(
            self._kafka.topics.agent_status, key, value, headers, f"presence of agent '{agent_id}'"
        )


class ResponsePublisher:
    """Writes the CommandResponseMessages monitord itself reports (EXPIRED, INVALID)."""

    def __init__(self, bridge: BackgroundProducer, kafka: KafkaSection, server_id: str) -> None:
        self._bridge = bridge
        self._kafka = kafka
        self._server_id = server_id

    def publish(self, response: pb.CommandResponseMessage, on_failure: Callable[[], None] | None = None) -> None:
        """Write ``response`` in the background; ``on_failure`` is called if Kafka refused it."""
        key, value, headers = records.encode(
            response, agent_id=response.agent_id, server_id=self._server_id, encoding=self._kafka.value_encoding
        )
        what = f"response to command {response.command_id}"
        self._bridge.publish_soon(self._kafka.topics.command_responses, key, value, headers, what, on_failure)

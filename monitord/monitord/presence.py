"""Agent lifecycle events on the compacted ``agent-status`` topic (key = agent id).

The latest record per agent says whether it is connected and to which monitord instance; that is
what ``monitorctl agents`` shows. Publishing never blocks a stream: a failed publish is logged.
"""

from __future__ import annotations

import logging

from monitord import records
from monitord.config import KafkaSection
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.sessions import Registration
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


class PresencePublisher:
    """Turns session events into AgentStatus records."""

    def __init__(self, bridge: KafkaProducerBridge, kafka: KafkaSection, server_id: str) -> None:
        self._bridge = bridge
        self._kafka = kafka
        self._server_id = server_id

    def publish(
        self,
        agent_id: str,
        state: pb.AgentPresence.ValueType,
        *,
        reason: str = "",
        peer: str = "",
        registration: Registration | None = None,
    ) -> None:
        status = pb.AgentStatus(agent_id=agent_id, state=state, reason=reason, server_id=self._server_id, peer=peer)
        status.at.GetCurrentTime()
        if registration is not None:
            status.hostname = registration.hostname
            status.agent_version = registration.agent_version
            status.instance_id = registration.instance_id
        key, value, headers = records.encode(
            status, agent_id=agent_id, server_id=self._server_id, encoding=self._kafka.value_encoding
        )
        self._bridge.publish_soon(
            self._kafka.topics.agent_status, key, value, headers, f"presence of agent '{agent_id}'"
        )

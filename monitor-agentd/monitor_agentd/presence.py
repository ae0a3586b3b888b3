"""What the agent tells the server about itself: the registration on each connection, and
heartbeats every interval while connected -- also while only waiting for acks, so the server never
takes a quiet but healthy agent for a stale one.

Each registration carries a new connection number (:class:`monitor_agentd.state.ConnectionNumbers`),
which the stream repeats: the server puts it into every presence record of that stream, so
readers can tell a newer connection from an older one whatever the order of the records.
"""

from __future__ import annotations

import asyncio
import platform
import socket
import time
import uuid
from collections.abc import Mapping, Sized
from types import MappingProxyType
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from monitor_agentd import __version__
from monitor_agentd.outbound import Outbound
from monitor_agentd.state import ConnectionNumbers
from monitoring.v1 import monitoring_pb2 as pb

CAPABILITIES = ("metrics.v1", "heartbeat.v1", "ack.range.v1", "commands.v1")


class Pace(Protocol):
    """The collection figures a heartbeat reports (the schedule)."""

    @property
    def interval(self) -> float:
        """Seconds between two collections."""
        ...

    @property
    def sequence(self) -> int:
        """Sequence number of the newest record."""
        ...


class SpoolFigures(Sized, Protocol):
    """Depth (``len``) and drop count of the spool."""

    @property
    def dropped(self) -> int:
        """Records dropped so far."""
        ...


class Running(Protocol):
    """How many commands execute now (the command runner)."""

    @property
    def running(self) -> int:
        """Commands executing now."""
        ...


class Presence:
    """Builds registrations and heartbeats from the live figures of the agent's parts."""

    def __init__(
        self,
        agent_id: str,
        pace: Pace,
        spool: SpoolFigures,
        commands: Running,
        *,
        labels: Mapping[str, str] = MappingProxyType({}),
        hostname: str | None = None,
        connections: ConnectionNumbers | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.hostname = hostname or socket.gethostname()
        #: A new value per process: the server tells a restart from a reconnect by it.
        self.instance_id = uuid.uuid4().hex
        self.started_at = time.time()
        self.labels = labels
        self._pace = pace
        self._spool = spool
        self._commands = commands
        # Without the state directory's numbers (StateDir.connections()) they still increase
        # within this process and across restarts by their clock floor, only not past a clock step.
        self._connections = connections if connections is not None else ConnectionNumbers(None)

    @property
    def connection(self) -> int:
        """The number of the newest connection (0 before the first registration)."""
        return self._connections.last

    def registration(self) -> pb.AgentRegistration:
        """What RegisterAgent tells the server on a new connection; each call numbers a new one."""
        reg = pb.AgentRegistration(
            agent_id=self.agent_id,
            hostname=self.hostname,
            agent_version=__version__,
            capabilities=CAPABILITIES,
            protocol_version=1,
            instance_id=self.instance_id,
            os=platform.system(),
            platform=platform.platform(),
            interval_seconds=self._pace.interval,
            last_sequence=self._pace.sequence,
            connection=self._connections.next(),
        )
        reg.started_at.FromSeconds(int(self.started_at))
        reg.labels.update(self.labels)
        return reg

    def heartbeat(self, state: pb.AgentState.ValueType) -> pb.AgentHeartbeat:
        """A heartbeat in ``state`` with the current spool and command figures."""
        sent_at = Timestamp()
        sent_at.GetCurrentTime()
        return pb.AgentHeartbeat(
            agent_id=self.agent_id,
            sent_at=sent_at,
            state=state,
            last_sequence=self._pace.sequence,
            spool_depth=len(self._spool),
            spool_dropped=self._spool.dropped,
            interval_seconds=self._pace.interval,
            running_commands=self._commands.running,
        )

    async def send_heartbeats(self, connected: asyncio.Event, outbound: Outbound) -> None:
        """Queue a RUNNING heartbeat every interval while ``connected`` is set (until cancelled)."""
        await connected.wait()
        while True:
            if connected.is_set():
                outbound.add_control(pb.AgentMessage(heartbeat=self.heartbeat(pb.AGENT_STATE_RUNNING)))
            await asyncio.sleep(self._pace.interval)

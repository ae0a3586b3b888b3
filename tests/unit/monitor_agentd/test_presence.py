"""Registration and heartbeats: what the agent tells the server about itself."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path
from types import MappingProxyType

from monitor_agentd import __version__
from monitor_agentd.outbound import Outbound
from monitor_agentd.presence import CAPABILITIES, Presence
from monitor_agentd.spool import Spool
from monitor_agentd.state import ConnectionNumbers
from monitoring.v1 import monitoring_pb2 as pb


class Pace:
    interval = 0.01
    sequence = 17


class Running:
    running = 2


def make() -> tuple[Presence, Spool]:
    spool = Spool(1)
    spool.add(pb.MetricsData(sequence=1))
    spool.add(pb.MetricsData(sequence=2))  # drops #1
    presence = Presence("a1", Pace(), spool, Running(), labels=MappingProxyType({"env": "test"}), hostname="h1")
    return presence, spool


def test_registration_describes_this_process() -> None:
    presence, _ = make()
    reg = presence.registration()
    assert (reg.agent_id, reg.hostname, reg.agent_version, reg.protocol_version) == ("a1", "h1", __version__, 1)
    assert tuple(reg.capabilities) == CAPABILITIES and reg.os == platform.system()
    assert reg.interval_seconds == 0.01 and reg.last_sequence == 17 and dict(reg.labels) == {"env": "test"}
    assert reg.started_at.seconds == int(presence.started_at) and len(reg.instance_id) == 32
    other = Presence("a1", Pace(), Spool(1), Running())
    assert other.instance_id != presence.instance_id and other.hostname


def test_every_registration_numbers_a_new_connection(tmp_path: Path) -> None:
    numbers = ConnectionNumbers(tmp_path / "connection", clock=lambda: 1.0)
    presence = Presence("a1", Pace(), Spool(1), Running(), connections=numbers)
    assert presence.connection == 0
    assert [presence.registration().connection for _ in range(3)] == [1000, 1001, 1002]
    assert presence.connection == 1002 and (tmp_path / "connection").read_text() == "1002\n"
    # Without the state directory's numbers they still increase (by the clock, then by one).
    default = Presence("a1", Pace(), Spool(1), Running())
    first, second = default.registration().connection, default.registration().connection
    assert 0 < first < second


def test_heartbeat_carries_the_live_figures() -> None:
    presence, _ = make()
    beat = presence.heartbeat(pb.AGENT_STATE_STOPPING)
    assert beat.state == pb.AGENT_STATE_STOPPING and beat.agent_id == "a1"
    assert (beat.last_sequence, beat.spool_depth, beat.spool_dropped, beat.running_commands) == (17, 1, 1, 2)
    assert beat.interval_seconds == 0.01 and beat.sent_at.seconds > 0


def test_heartbeats_are_queued_only_while_connected() -> None:
    async def scenario() -> None:
        presence, spool = make()
        outbound = Outbound(spool)
        while outbound.next_message() is not None:
            pass
        connected = asyncio.Event()
        task = asyncio.create_task(presence.send_heartbeats(connected, outbound))
        connected.set()
        await asyncio.wait_for(outbound.wait(), 10)
        message = outbound.next_message()
        assert message is not None and message.heartbeat.state == pb.AGENT_STATE_RUNNING
        task.cancel()

    asyncio.run(scenario())

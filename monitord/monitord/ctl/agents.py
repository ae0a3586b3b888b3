"""``monitorctl agents``: who is connected, according to the compacted agent-status topic.

monitord publishes an AgentStatus (key = agent id) when an agent connects, disconnects or goes
stale. Reading the topic from the beginning to its current end and keeping, per key, the record
that wins by :mod:`monitord.presence_order` (the higher connection number; for the same connection
its end; without numbers the later record) gives the present state of the fleet, also when a
server published an agent's old disconnect late; a tombstone (null value) means the agent was
forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from monitord import records
from monitord.ctl.kafka_io import read_to_end
from monitord.ctl.output import Output
from monitord.kafka_clients import ConsumerLike, KafkaClients
from monitord.presence_order import keep_latest
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.exits import EX_OK

log = logging.getLogger(__name__)

COLUMNS = ("AGENT", "STATE", "SERVER", "HOST", "VERSION", "SINCE", "REASON")

#: What ``agents`` lists without ``--all`` (which adds DISCONNECTED ones).
CURRENT_STATES = frozenset({pb.CONNECTED, pb.STALE})


def read_presence(
    consumer: ConsumerLike, topic: str, timeout: float, clock: Callable[[], float]
) -> dict[str, pb.AgentStatus]:
    """The present AgentStatus per agent id in ``topic`` (up to its end as of now), by the ordering rule."""
    latest: dict[str, pb.AgentStatus] = {}
    for msg in read_to_end(consumer, topic, timeout, clock):
        key, value = msg.key(), msg.value()
        if value is None:
            if key is not None:
                latest.pop(key.decode("utf-8", "replace"), None)
            continue
        try:
            record = records.decode(key, value, msg.headers(), default_type=pb.AgentStatus)
        except records.RecordDecodeError as exc:
            log.warning(
                "Skipping undecodable presence record at %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), exc
            )
            continue
        if isinstance(record.message, pb.AgentStatus):
            status = record.message
            status.agent_id = record.agent_id  # the key names the agent, also for a record that does not
            keep_latest(latest, status)
    return latest


def select(statuses: Mapping[str, pb.AgentStatus], *, include_all: bool) -> list[pb.AgentStatus]:
    """The statuses to list, by agent id; disconnected agents only with ``include_all``."""
    return [status for _agent, status in sorted(statuses.items()) if include_all or status.state in CURRENT_STATES]


def format_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h07m``, ``12d`` -- coarse enough to read at a glance."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d"


def age_seconds(status: pb.AgentStatus, now: float) -> float | None:
    """Seconds since the status was published (never negative: hosts' clocks differ), or None if unknown."""
    if not status.HasField("at"):
        return None
    return max(0.0, now - status.at.ToNanoseconds() / 1e9)


def table(statuses: Iterable[pb.AgentStatus], now: float) -> list[str]:
    """The aligned table (header first); the last column is not padded."""
    rows = [list(COLUMNS)]
    for status in statuses:
        age = age_seconds(status, now)
        rows.append(
            [
                status.agent_id,
                pb.AgentPresence.Name(status.state) if status.state in pb.AgentPresence.values() else str(status.state),
                status.server_id or "-",
                status.hostname or "-",
                status.agent_version or "-",
                f"{format_age(age)} ago" if age is not None else "-",
                status.reason,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]


def run_agents(
    clients: KafkaClients, out: Output, *, include_all: bool, wall: Callable[[], float], clock: Callable[[], float]
) -> int:
    """Print the fleet; ``wall`` (epoch seconds) dates the ages, ``clock`` (monotonic) bounds the read."""
    consumer = clients.consumer()
    try:
        statuses = read_presence(consumer, clients.kafka.topics.agent_status, clients.timeout, clock)
    finally:
        consumer.close()
    now = wall()  # after reading: a status published meanwhile must not look like it is from the future
    shown = select(statuses, include_all=include_all)
    if out.json_mode:
        for status in shown:
            age = age_seconds(status, now)
            out.record("agent", status, age_seconds=round(age, 3) if age is not None else None)
        return EX_OK
    for line in table(shown, now):
        out.line(line)
    hidden = len(statuses) - len(shown)
    if hidden:
        out.note(f"({hidden} disconnected agent(s) not shown; --all lists them)")
    return EX_OK

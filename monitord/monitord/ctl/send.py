"""``monitorctl send``: put one command on the commands topic and, with ``--wait``, follow it.

With ``--wait`` the reader is positioned at the current ends of command-responses and agent-status
*before* the command is produced, so even an instant answer is seen. Responses are matched by
command id; DELIVERED is printed and waited past, the first final response decides the exit status
(see :mod:`monitord.ctl.responses`). If the agent that took the command disconnects before
answering (:mod:`monitord.ctl.agent_watch`) the wait ends with 3; no final response within
``--wait-timeout`` gives 69 -- the wait is bounded either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from monitord import records
from monitord.command_records import DEFAULT_ENCODING, CommandProducer, Encoding, is_final, new_command
from monitord.ctl import responses
from monitord.ctl.agent_watch import AgentWatch
from monitord.ctl.kafka_io import assign_at_end, partitions_of, poll_batch
from monitord.ctl.output import Output
from monitord.kafka_clients import ConsumerLike, KafkaClients
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.exits import EX_OK, EX_UNAVAILABLE

log = logging.getLogger(__name__)

#: The ``server-id`` header of commands monitorctl produces.
SOURCE = "monitorctl"


@dataclass(frozen=True)
class SendRequest:
    """What ``monitorctl send`` was asked to do."""

    agent_id: str
    command: str
    requested_by: str
    args: tuple[str, ...] = ()
    timeout_seconds: int = 0
    ttl_seconds: int = 0
    encoding: Encoding = DEFAULT_ENCODING
    wait: bool = False
    wait_timeout: float = 60.0


def run_send(
    request: SendRequest,
    clients: KafkaClients,
    out: Output,
    *,
    command_id: str,
    now: float,
    clock: Callable[[], float],
) -> int:
    """Produce the command (and wait for its final response); returns the exit status.

    ``now`` (epoch seconds) stamps ``created_at``; ``clock`` (monotonic) times ``--wait-timeout``.
    Raises :class:`~monitord.errors.KafkaUnavailable` when Kafka cannot be used.
    """
    command = new_command(
        command_id=command_id,
        agent_id=request.agent_id,
        command=request.command,
        args=request.args,
        timeout_seconds=request.timeout_seconds,
        ttl_seconds=request.ttl_seconds,
        requested_by=request.requested_by,
        now=now,
    )
    topics = clients.kafka.topics
    reader: ConsumerLike | None = None
    try:
        if request.wait:
            reader = clients.consumer()
            assign_at_end(reader, (topics.command_responses, topics.agent_status), clients.timeout)
        kafka_producer = clients.producer()
        # Fails fast (within clients.timeout) if Kafka is unreachable or the topic is missing,
        # instead of after the whole delivery timeout.
        partitions_of(kafka_producer, topics.commands, clients.timeout)
        producer = CommandProducer(kafka_producer, topics.commands, source=SOURCE, encoding=request.encoding)
        producer.send(command)
        producer.flush((clients.kafka.delivery_timeout_ms or 30_000) / 1000 + 5)  # 0 (never) is bounded here
        if out.json_mode:
            out.record("command", command)
        else:
            out.line(command.command_id)
        if reader is None:
            return EX_OK
        return await_final(reader, command, request.wait_timeout, out, clock, wall=_wall_from(now, clock))
    finally:
        if reader is not None:
            reader.close()


def await_final(
    reader: ConsumerLike,
    command: pb.CommandMessage,
    wait_timeout: float,
    out: Output,
    clock: Callable[[], float],
    *,
    wall: Callable[[], float] | None = None,
) -> int:
    """Print each response to ``command`` until a final one; its exit status.

    ``reader`` reads command-responses and agent-status. 3 if the agent that took the command
    disconnected first, 69 after ``wait_timeout``; ``wall`` (epoch seconds) dates the DELIVERED.
    """
    wall = wall or _wall_from(0.0, clock)
    deadline = clock() + wait_timeout
    shown: set[pb.CommandStatus.ValueType] = set()
    watch = AgentWatch(command.agent_id)
    delivered_at = 0.0
    while (remaining := deadline - clock()) > 0:
        for msg in poll_batch(reader, min(remaining, 0.5)):
            gone: pb.AgentStatus | None = None
            decoded = _decode(msg.key(), msg.value(), msg.headers())
            if decoded is None:
                continue
            message, server_id = decoded
            if isinstance(message, pb.AgentStatus):
                gone = watch.presence(message, server_id)
            elif isinstance(message, pb.CommandResponseMessage) and message.command_id == command.command_id:
                if message.status == pb.DELIVERED:
                    delivered_at = delivered_at or wall()
                    gone = watch.delivered(message, server_id)
                # Agents may report a response again after a reconnect; show each status once.
                if message.status not in shown:
                    shown.add(message.status)
                    show_response(message, out)
                    if is_final(message.status):
                        return responses.exit_status(message.status)
            if gone is not None:
                return _disconnected(command, gone, delivered_at, out)
    delivered = " (it was delivered)" if pb.DELIVERED in shown else ""
    out.note(f"monitorctl: no final response to command {command.command_id} within {wait_timeout:g}s{delivered}")
    return EX_UNAVAILABLE


def show_response(response: pb.CommandResponseMessage, out: Output) -> None:
    if out.json_mode:
        out.record("response", response)
        return
    for chunk in responses.render(response):
        out.write(chunk.text, stderr=chunk.stream == "stderr")


def _disconnected(command: pb.CommandMessage, status: pb.AgentStatus, delivered_at: float, out: Output) -> int:
    if out.json_mode:
        out.record("presence", status)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(delivered_at))
    out.note(
        f"monitorctl: agent {command.agent_id!r} disconnected while running command {command.command_id} "
        f"(DELIVERED at {when}); its final status will be written when it reconnects (FAILED if it restarted)"
    )
    return responses.EXIT_DISCONNECTED


def _wall_from(now: float, clock: Callable[[], float]) -> Callable[[], float]:
    """Epoch seconds from ``now`` (read when ``clock`` was read first) onwards, advanced by ``clock``."""
    start = clock()
    return lambda: now + (clock() - start)


def _decode(key: bytes | None, value: bytes | None, headers: Any) -> tuple[Message, str] | None:
    """A response or presence record and the monitord instance that wrote it; None if undecodable."""
    if value is None:
        return None  # a tombstone on agent-status
    try:
        record = records.decode(key, value, headers, default_type=pb.CommandResponseMessage)
    except records.RecordDecodeError as exc:
        log.debug("Skipping undecodable record: %s", exc)
        return None
    return record.message, record.server_id or ""

"""``monitorctl send``: put one command on the commands topic and, with ``--wait``, follow it.

With ``--wait`` the response reader is positioned at the current end of command-responses
*before* the command is produced, so even an instant answer is seen. Responses are matched by
command id; DELIVERED is printed and waited past, the first final response decides the exit status
(see :mod:`monitord.ctl.responses`); none within ``--wait-timeout`` gives 69.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitord import records
from monitord.command_records import DEFAULT_ENCODING, CommandProducer, Encoding, is_final, new_command
from monitord.ctl import responses
from monitord.ctl.kafka_io import assign, partitions_of, poll_batch
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
            assign(reader, topics.command_responses, clients.timeout, "end")
        kafka_producer = clients.producer()
        # Fails fast (within clients.timeout) if Kafka is unreachable or the topic is missing,
        # instead of after the whole delivery timeout.
        partitions_of(kafka_producer, topics.commands, clients.timeout)
        producer = CommandProducer(kafka_producer, topics.commands, source=SOURCE, encoding=request.encoding)
        producer.send(command)
        producer.flush(clients.kafka.delivery_timeout_ms / 1000 + 5)
        if out.json_mode:
            out.record("command", command)
        else:
            out.line(command.command_id)
        if reader is None:
            return EX_OK
        return await_final(reader, command, request.wait_timeout, out, clock)
    finally:
        if reader is not None:
            reader.close()


def await_final(
    reader: ConsumerLike, command: pb.CommandMessage, wait_timeout: float, out: Output, clock: Callable[[], float]
) -> int:
    """Print each response to ``command`` until a final one; its exit status, or 69 after ``wait_timeout``."""
    deadline = clock() + wait_timeout
    shown: set[pb.CommandStatus.ValueType] = set()
    while (remaining := deadline - clock()) > 0:
        for msg in poll_batch(reader, min(remaining, 0.5)):
            response = _response_to(command.command_id, msg.key(), msg.value(), msg.headers())
            # Agents may report a response again after a reconnect; show each status once.
            if response is None or response.status in shown:
                continue
            shown.add(response.status)
            show_response(response, out)
            if is_final(response.status):
                return responses.exit_status(response.status)
    delivered = " (it was delivered)" if pb.DELIVERED in shown else ""
    out.note(f"monitorctl: no final response to command {command.command_id} within {wait_timeout:g}s{delivered}")
    return EX_UNAVAILABLE


def show_response(response: pb.CommandResponseMessage, out: Output) -> None:
    if out.json_mode:
        out.record("response", response)
        return
    for chunk in responses.render(response):
        out.write(chunk.text, stderr=chunk.stream == "stderr")


def _response_to(
    command_id: str, key: bytes | None, value: bytes | None, headers: Any
) -> pb.CommandResponseMessage | None:
    try:
        record = records.decode(key, value, headers, default_type=pb.CommandResponseMessage)
    except records.RecordDecodeError as exc:
        log.debug("Skipping undecodable response record: %s", exc)
        return None
    message = record.message
    if isinstance(message, pb.CommandResponseMessage) and message.command_id == command_id:
        return message
    return None

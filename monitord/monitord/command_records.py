"""Commands as records, and what a command's responses mean: shared by everyone who produces commands.

monitorctl and the analyzer's rules produce commands through :class:`CommandProducer`, so a
command looks the same on the commands topic whoever asked for it: key = agent id, the
``monitord.records`` headers with ``server-id`` naming the producing tool, and (by default) a
proto3 JSON value that any Kafka tool can read. A command gets a DELIVERED response when the agent
accepted it, then exactly one final response (:data:`FINAL_STATUSES`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from confluent_kafka import KafkaException

from monitord import records
from monitord.errors import KafkaUnavailable
from monitord.kafka_clients import ProducerLike, error_text, exception_text
from monitoring.v1 import monitoring_pb2 as pb

Encoding = Literal["protobuf", "json"]

#: Value encoding of produced commands unless asked otherwise (monitord reads both).
DEFAULT_ENCODING: Encoding = "json"


def new_command(
    *,
    command_id: str,
    agent_id: str,
    command: str,
    args: Sequence[str] = (),
    timeout_seconds: int = 0,
    ttl_seconds: int = 0,
    requested_by: str,
    now: float,
) -> pb.CommandMessage:
    """A CommandMessage created at ``now`` (seconds since the epoch)."""
    message = pb.CommandMessage(
        command_id=command_id,
        agent_id=agent_id,
        command=command,
        args=list(args),
        timeout_seconds=timeout_seconds,
        ttl_seconds=ttl_seconds,
        requested_by=requested_by,
    )
    message.created_at.FromNanoseconds(int(now * 1e9))
    return message


def command_record(
    command: pb.CommandMessage, *, source: str, encoding: Encoding = DEFAULT_ENCODING
) -> tuple[bytes, bytes, records.Headers]:
    """(key, value, headers) of ``command``; ``source`` goes into the ``server-id`` header."""
    return records.encode(command, agent_id=command.agent_id, server_id=source, encoding=encoding)


#: Statuses after which nothing more comes for a command.
FINAL_STATUSES = frozenset({pb.SUCCEEDED, pb.FAILED, pb.TIMED_OUT, pb.REJECTED, pb.EXPIRED, pb.INVALID})


def is_final(status: pb.CommandStatus.ValueType) -> bool:
    return status in FINAL_STATUSES


def status_name(status: pb.CommandStatus.ValueType) -> str:
    try:
        return pb.CommandStatus.Name(status)
    except ValueError:
        return f"STATUS_{int(status)}"


def first_line(response: pb.CommandResponseMessage) -> str:
    """The first non-empty line of the command's stdout (or stderr), for one-line reports."""
    for text in (response.stdout, response.stderr):
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return ""


DeliveryCallback = Callable[[pb.CommandMessage, str | None], None]


class CommandProducer:
    """Produces CommandMessages to the commands topic (key = agent id, :func:`command_record`).

    ``on_result(command, error)`` is called from ``poll``/``flush`` once Kafka confirmed (error
    None) or gave up on a command. :meth:`flush` raises :class:`KafkaUnavailable` if any failed.
    """

    def __init__(
        self,
        producer: ProducerLike,
        topic: str,
        *,
        source: str,
        encoding: Literal["protobuf", "json"],
        on_result: DeliveryCallback | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._source = source
        self._encoding = encoding
        self._on_result = on_result
        self._outstanding = 0
        #: Commands Kafka did not take, and the last reason.
        self.failed = 0
        self.last_error = ""

    def send(self, command: pb.CommandMessage) -> None:
        """Queue ``command``; raises :class:`KafkaUnavailable` if the local queue refuses it."""
        key, value, headers = command_record(command, source=self._source, encoding=self._encoding)

        def delivered(err: Any, _msg: Any) -> None:
            self._outstanding -= 1
            error = None if err is None else error_text(err)
            if error is not None:
                self.failed += 1
                self.last_error = f"command {command.command_id}: {error}"
            if self._on_result is not None:
                self._on_result(command, error)

        try:
            self._producer.produce(self._topic, value=value, key=key, headers=headers, on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            reason = exception_text(exc) if isinstance(exc, KafkaException) else str(exc)
            raise KafkaUnavailable(f"cannot queue command {command.command_id}: {reason}") from None
        self._outstanding += 1

    def poll(self) -> None:
        """Serve delivery callbacks without waiting."""
        self._producer.poll(0)

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` s until Kafka confirmed everything sent."""
        remaining = self._producer.flush(timeout)
        if remaining or self._outstanding > 0:
            raise KafkaUnavailable(f"{max(remaining, self._outstanding)} command(s) not confirmed by Kafka")
        if self.failed:
            raise KafkaUnavailable(f"{self.failed} command(s) refused by Kafka, last: {self.last_error}")

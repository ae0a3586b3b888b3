"""CommandMessages as monitorctl and the analyzer's rules produce them: built here, encoded here.

Both producers of commands share this module, so a command looks the same on the commands topic
whoever asked for it: key = agent id, the ``monitord.records`` headers with ``server-id`` naming
the producing tool, and (by default) a proto3 JSON value that any Kafka tool can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from monitord import records
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

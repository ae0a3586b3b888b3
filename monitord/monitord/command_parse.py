"""Reading one ``commands`` record: decode, validate, normalise, and fix its deadline.

Every instance, and every restart of one, must come to the same command from the same record: a
missing command id is derived from the record's position and a missing creation time and the TTL
are counted from the record's Kafka timestamp, never from when this process read it.
"""

from __future__ import annotations

from monitord import records
from monitord.config import CommandsSection
from monitord.errors import InvalidCommand
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import ID_RULE, is_id, shown


def auto_id(partition: int, offset: int) -> str:
    """The id of a command produced without one: the same for every reader of that record."""
    return f"auto-{partition}-{offset}"


def parse(
    key: bytes | None,
    value: bytes | None,
    headers: records.Headers | None,
    cfg: CommandsSection,
    written_at: float,
    *,
    fallback_id: str = "",
) -> pb.CommandMessage:
    """Decode and normalise a commands record; :class:`InvalidCommand` says what is wrong.

    ``written_at`` is the record's timestamp (seconds); ``fallback_id`` names an id-less command.
    """
    if not value:
        raise InvalidCommand("empty record value")
    if len(value) > cfg.max_record_bytes:
        raise InvalidCommand(f"record of {len(value)} bytes (limit {cfg.max_record_bytes})")
    if key and not is_id(key.decode("utf-8", "replace")):
        raise InvalidCommand(f"record key '{shown(key)}' is not an agent id ({ID_RULE})")
    try:  # the same decoder as every other reader: protobuf, or proto3 JSON by header or by look
        command = records.decode(key, value, headers, default_type=pb.CommandMessage).message
    except records.RecordDecodeError as exc:
        raise InvalidCommand(f"not a CommandMessage: {shown(str(exc), 200)}") from None
    if not isinstance(command, pb.CommandMessage):
        raise InvalidCommand(f"a {command.DESCRIPTOR.full_name} record, not a CommandMessage")
    key_agent = key.decode("utf-8", "replace") if key else ""
    if key_agent and command.agent_id and key_agent != command.agent_id:
        raise InvalidCommand(f"record key '{shown(key_agent)}' and agent_id '{shown(command.agent_id)}' differ")
    command.agent_id = command.agent_id or key_agent
    command.command_id = command.command_id or fallback_id
    if not command.command_id:
        raise InvalidCommand("no command id")
    if not is_id(command.command_id):
        raise InvalidCommand(f"command id '{shown(command.command_id)}' is not an id ({ID_RULE})")
    if not command.agent_id:
        raise InvalidCommand("no agent id (record key or agentId)")
    if not is_id(command.agent_id):
        raise InvalidCommand(f"agent id '{shown(command.agent_id)}' is not an id ({ID_RULE})")
    if not command.command:
        raise InvalidCommand("no command name")
    if len(command.command) > cfg.max_name_chars:
        raise InvalidCommand(f"command name of {len(command.command)} characters (limit {cfg.max_name_chars})")
    if len(command.requested_by) > cfg.max_requested_by_chars:
        raise InvalidCommand(
            f"requested_by of {len(command.requested_by)} characters (limit {cfg.max_requested_by_chars})"
        )
    if len(command.args) > cfg.max_args:
        raise InvalidCommand(f"{len(command.args)} arguments (limit {cfg.max_args})")
    if any(len(a.encode()) > cfg.max_arg_bytes for a in command.args):
        raise InvalidCommand(f"an argument is longer than {cfg.max_arg_bytes} bytes")
    if not command.HasField("created_at"):
        command.created_at.FromNanoseconds(int(written_at * 1e9))
    return command


def deadline_of(command: pb.CommandMessage, cfg: CommandsSection, written_at: float) -> float:
    """Absolute expiry: expires_at, else created_at + ttl, else written_at + default TTL; never
    later than written_at + max TTL (``written_at``: the record's timestamp)."""
    created = command.created_at.ToNanoseconds() / 1e9
    if command.HasField("expires_at"):
        deadline = command.expires_at.ToNanoseconds() / 1e9
    elif command.ttl_seconds:
        deadline = created + command.ttl_seconds
    else:
        deadline = written_at + cfg.default_ttl_seconds
    deadline = min(deadline, written_at + cfg.max_ttl_seconds)
    if not command.HasField("expires_at"):
        command.expires_at.FromNanoseconds(int(deadline * 1e9))
    return deadline

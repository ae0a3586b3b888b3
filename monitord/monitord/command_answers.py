"""The answers monitord gives commands itself (EXPIRED, INVALID): what they echo, and how much.

An INVALID answer needs the command's id, salvaged from a record that did not parse; it echoes
only the id, the agent, the command name and ``requested_by``, each bounded, and only when the ids
are valid ids -- so a hostile record cannot make monitord write (or log) more than it bounds.
"""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from monitord.command_ledger import Owed
from monitord.config import CommandsSection
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.untrusted import is_id


def salvage(key: bytes | None, value: bytes | None, cfg: CommandsSection) -> pb.CommandMessage | None:
    """The bounded core of an unusable commands record to answer INVALID, or None if it has no
    valid command id and agent id (then nothing can correlate an answer)."""
    command = pb.CommandMessage()
    try:  # the id, if the record is readable at all
        if value and value.lstrip()[:1] == b"{":
            json_format.Parse(value.decode("utf-8"), command, ignore_unknown_fields=True)
        elif value:
            command.ParseFromString(value)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError, ValueError):
        pass
    agent_id = command.agent_id or (key or b"").decode("utf-8", "replace")
    if not is_id(command.command_id) or not is_id(agent_id):
        return None
    return pb.CommandMessage(
        command_id=command.command_id,
        agent_id=agent_id,
        command=command.command[: cfg.max_name_chars],
        requested_by=command.requested_by[: cfg.max_requested_by_chars],
    )


def answer(owed: Owed, server_id: str, now: float) -> pb.CommandResponseMessage:
    """The CommandResponseMessage monitord writes for ``owed``."""
    command = owed.command
    response = pb.CommandResponseMessage(
        command_id=command.command_id,
        agent_id=command.agent_id,
        command=command.command,
        status=owed.status,
        message=owed.message,
        requested_by=command.requested_by,
        reported_by=f"monitord:{server_id}",
    )
    response.finished_at.FromNanoseconds(int(now * 1e9))
    return response

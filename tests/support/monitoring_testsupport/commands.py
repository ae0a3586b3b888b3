"""Commands as an operator sends them, and the responses read back from Kafka."""

from __future__ import annotations

import json
from typing import Any

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.kafka import read_records
from monitoring_testsupport.paths import unique

FINAL_STATUSES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "EXPIRED", "INVALID"}


def produce_command(bootstrap: str, agent_id: str, command: str, *args: str, **fields: Any) -> str:
    """Put a CommandMessage (proto3 JSON, as an operator would) on the commands topic; returns its id."""
    from confluent_kafka import Producer

    command_id = fields.pop("command_id", None) or unique("cmd")
    body = {"commandId": command_id, "agentId": agent_id, "command": command, "args": list(args), **fields}
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce("commands", key=agent_id.encode(), value=json.dumps(body).encode())
    assert producer.flush(10) == 0
    return command_id


def command_responses(
    bootstrap: str, agent_id: str, command_id: str, *, timeout: float = 30.0, settle: float = 1.5
) -> list[Any]:
    """All responses to ``command_id`` (reading from the beginning): waits for a final one, then
    ``settle`` seconds more so duplicates would show."""
    found: list[Any] = []
    for record in read_records(
        bootstrap,
        "command-responses",
        [agent_id],
        expect=10**9,
        timeout=timeout,
        settle=0,
        stop=lambda recs: _has_final(recs, command_id),
        tail=settle,
    ):
        if record.message.command_id == command_id:  # type: ignore[attr-defined]
            found.append(record.message)
    return found


def _has_final(recs: list[records.DecodedRecord], command_id: str) -> bool:
    return any(
        r.message.command_id == command_id and pb.CommandStatus.Name(r.message.status) in FINAL_STATUSES  # type: ignore[attr-defined]
        for r in recs
    )


def statuses(responses: list[Any]) -> list[str]:
    return [pb.CommandStatus.Name(r.status) for r in responses]

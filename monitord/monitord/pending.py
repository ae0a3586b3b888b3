"""What a stream's acker waits on: one entry per record handed over, in arrival order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from monitoring.v1 import monitoring_pb2 as pb


@dataclass(slots=True)  # not frozen: one per record, and a frozen __init__ costs several times more
class Pending:
    kind: pb.AckKind.ValueType
    future: asyncio.Future[None]
    sequence: int = 0
    command_id: str = ""
    command_status: pb.CommandStatus.ValueType = pb.COMMAND_STATUS_UNSPECIFIED
    reject: str = ""  # set: answer with this negative ack without waiting for Kafka
    settled: bool = False  # a positive ack, nothing written (Kafka has that final status already)


def described(item: Pending) -> str:
    if item.kind == pb.ACK_KIND_METRICS:
        return f"metrics #{item.sequence}"
    return f"command response {item.command_id} ({pb.CommandStatus.Name(item.command_status)})"

"""The Kafka record format, in one place for the producer (monitord) and the readers (analyzer, ctl).

A record's key is the agent id (UTF-8), so all records of one agent land in one partition, in order.
Its value is the protobuf message, serialized (``content-type: application/x-protobuf``) or as
proto3 JSON (``application/json``). Headers:

=================  ==========================================================================
``message-type``   full protobuf name, e.g. ``monitoring.v1.MetricsData``
``content-type``   ``application/x-protobuf`` or ``application/json``
``agent-id``       the agent id again (for tools that do not show keys)
``server-id``      the monitord instance that received it
``sequence``       MetricsData only: the per-agent sequence number, decimal
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from monitord.errors import RecordDecodeError as RecordDecodeError  # readers catch records.RecordDecodeError
from monitoring.v1 import monitoring_pb2 as pb

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        pb.MetricsData,
        pb.CommandResponseMessage,
        pb.CommandMessage,
        pb.AgentHeartbeat,
        pb.AgentRegistration,
        pb.AgentStatus,
    )
}

Headers = list[tuple[str, bytes]]
#: Headers as confluent-kafka hands them back (a list of pairs; values may be None or str).
HeadersIn = Sequence[tuple[str, "str | bytes | None"]] | dict[str, "str | bytes | None"] | None


def encode(
    message: Message,
    *,
    agent_id: str,
    server_id: str,
    encoding: Literal["protobuf", "json"] = "protobuf",
    sequence: int | None = None,
) -> tuple[bytes, bytes, Headers]:
    """Return (key, value, headers) for ``message``."""
    encoder = StreamEncoder(agent_id=agent_id, server_id=server_id, encoding=encoding)
    value, headers = encoder.encode(message, sequence)
    return encoder.key, value, headers


class StreamEncoder:
    """:func:`encode` for the records of one agent stream, with the constant key and headers built
    once (the hot path: one call per received record)."""

    def __init__(self, *, agent_id: str, server_id: str, encoding: Literal["protobuf", "json"] = "protobuf") -> None:
        self._json = encoding == "json"
        self.key = agent_id.encode()
        self._common = [
            ("content-type", (JSON if self._json else PROTOBUF).encode()),
            ("agent-id", self.key),
            ("server-id", server_id.encode()),
        ]
        self._headers: dict[str, Headers] = {}

    def encode(self, message: Message, sequence: int | None = None) -> tuple[bytes, Headers]:
        """Return (value, headers); the key is :attr:`key`."""
        if self._json:
            value = json_format.MessageToJson(message, indent=None, preserving_proto_field_name=False).encode()
        else:
            value = message.SerializeToString()
        name = message.DESCRIPTOR.full_name
        headers = self._headers.get(name)
        if headers is None:
            headers = self._headers[name] = [("message-type", name.encode()), *self._common]
        if sequence is None:
            return value, list(headers)  # a copy: callers may add their own headers
        return value, [*headers, ("sequence", str(sequence).encode())]


def header(headers: HeadersIn, name: str) -> str | None:
    """The first header called ``name``, decoded, or None."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


@dataclass(frozen=True)
class DecodedRecord:
    """A record read back from Kafka."""

    agent_id: str
    message: Message
    server_id: str | None


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: HeadersIn,
    *,
    default_type: type[Message] | None = None,
) -> DecodedRecord:
    """Decode a record written by :func:`encode` (or a hand-written JSON one, given ``default_type``)."""
    type_name = header(headers, "message-type")
    cls = MESSAGE_TYPES.get(type_name) if type_name else default_type
    if cls is None:
        raise RecordDecodeError(f"unknown message-type header {type_name!r}")
    if value is None:
        raise RecordDecodeError("record has no value")
    message = cls()
    content_type = header(headers, "content-type")
    try:
        if content_type == JSON:
            json_format.Parse(value.decode("utf-8"), message, ignore_unknown_fields=False)
        elif content_type is None and value.lstrip()[:1] == b"{":
            _parse_unlabelled(value, message)
        else:
            message.ParseFromString(value)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise RecordDecodeError(f"cannot decode {cls.DESCRIPTOR.full_name}: {exc}") from None
    agent_id = key.decode("utf-8", "replace") if key else getattr(message, "agent_id", "")
    return DecodedRecord(agent_id=agent_id, message=message, server_id=header(headers, "server-id"))


def _parse_unlabelled(value: bytes, message: Message) -> None:
    """A record without content-type that looks like JSON: JSON, else protobuf (whose bytes can
    start with whitespace and ``{``: field 1 with length 123 is ``\\n{``)."""
    try:
        json_format.Parse(value.decode("utf-8"), message, ignore_unknown_fields=False)
    except (json_format.ParseError, UnicodeDecodeError) as json_error:
        message.Clear()
        try:
            message.ParseFromString(value)
        except DecodeError:
            raise json_error from None  # it was meant as JSON: say what is wrong with it


def describe_metrics(m: pb.MetricsData) -> str:
    """The per-record line: ``[agent-001 #3] CPU 45.2% | Memory 67.9% | Disk / 41.0% | ...``."""
    parts = [f"CPU {m.cpu.percent:.1f}%", f"Memory {m.memory.percent:.1f}%"]
    if m.disks:
        fullest = max(m.disks, key=lambda d: d.percent)
        parts.append(f"Disk {fullest.mountpoint} {fullest.percent:.1f}%")
    parts.append(f"Load {m.cpu.load_1m:.2f}")
    net = m.network.total
    parts.append(f"Net rx {net.bytes_recv / 1e6:.1f} MB tx {net.bytes_sent / 1e6:.1f} MB")
    return f"[{m.agent_id} #{m.sequence}] " + " | ".join(parts)

"""Messages from agents, decoded by monitord rather than by grpc.

grpc's own deserializer answers a malformed request with a logged traceback and status UNKNOWN
(unary) or ends a stream with status OK; decoding here turns it into :class:`MalformedMessage`,
which the service answers INVALID_ARGUMENT with one rate-limited log line.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from monitord.errors import MalformedMessage

M = TypeVar("M", bound=Message)


def decode(message_type: type[M], raw: bytes) -> M:
    """``raw`` parsed as ``message_type``; MalformedMessage (naming the type) if it is not one."""
    try:
        return message_type.FromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:  # RuntimeError: recursion too deep
        raise MalformedMessage(f"malformed {message_type.DESCRIPTOR.name}: {exc}") from None

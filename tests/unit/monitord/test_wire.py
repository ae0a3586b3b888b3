"""Requests decoded by monitord: a malformed one is a MalformedMessage naming its type."""

from __future__ import annotations

import pytest

from monitord.errors import MalformedMessage
from monitord.wire import decode
from monitoring.v1 import monitoring_pb2 as pb


def test_a_valid_message_is_decoded() -> None:
    raw = pb.AgentRegistration(agent_id="web-1", hostname="h").SerializeToString()
    assert decode(pb.AgentRegistration, raw).hostname == "h"


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 11])
def test_malformed_bytes_raise_malformed_message(raw: bytes) -> None:
    with pytest.raises(MalformedMessage, match=r"^malformed AgentMessage: "):
        decode(pb.AgentMessage, raw)

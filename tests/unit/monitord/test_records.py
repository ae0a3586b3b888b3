"""The Kafka record format: round trips, garbage refused, hand-written records understood."""

from __future__ import annotations

import pytest

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_records_round_trip(encoding: str) -> None:
    m = pb.MetricsData(agent_id="web-1", sequence=42)
    m.cpu.percent = 12.5
    key, value, headers = records.encode(m, agent_id="web-1", server_id="s1", encoding=encoding, sequence=42)  # type: ignore[arg-type]
    assert key == b"web-1"
    assert dict(headers)["message-type"] == b"monitoring.v1.MetricsData"
    assert dict(headers)["sequence"] == b"42"
    back = records.decode(key, value, headers)
    assert back.message == m and back.agent_id == "web-1" and back.server_id == "s1"


def test_decode_refuses_garbage() -> None:
    with pytest.raises(records.RecordDecodeError):
        records.decode(b"k", b"\xff\xff", [("message-type", b"monitoring.v1.MetricsData")])
    with pytest.raises(records.RecordDecodeError):
        records.decode(b"k", b"{}", [("message-type", b"nope")])


@pytest.mark.parametrize("command_id", ["c1", "x" * 123])  # field 1, length 123: the bytes start "\\n{"
def test_records_without_content_type_are_told_apart(command_id: str) -> None:
    """Hand-written producers may leave out content-type: protobuf (which starts with a newline
    byte, field 1) and JSON are both understood."""
    cmd = pb.CommandMessage(command_id=command_id, agent_id="web-1", command="ping")
    only_type = [("message-type", b"monitoring.v1.CommandMessage")]
    assert cmd.SerializeToString()[:1] == b"\n"
    assert records.decode(None, cmd.SerializeToString(), only_type).message == cmd
    text = b' {"commandId": "%s", "agentId": "web-1", "command": "ping"}' % command_id.encode()
    assert records.decode(None, text, only_type).message == cmd
    with pytest.raises(records.RecordDecodeError, match="JSON"):
        records.decode(None, b'{"agentId": ', only_type)


def test_json_records_round_trip_and_header_lookup() -> None:
    status = pb.AgentStatus(agent_id="web-1", state=pb.CONNECTED, server_id="s1")
    key, value, headers = records.encode(status, agent_id="web-1", server_id="s1", encoding="json")
    assert value.startswith(b"{") and records.header(headers, "content-type") == records.JSON
    assert records.header({"content-type": "text/plain"}, "content-type") == "text/plain"
    assert records.header(None, "x") is None
    assert records.decode(key, value, headers).message == status
    with pytest.raises(records.RecordDecodeError, match="no value"):
        records.decode(key, None, headers)
    with pytest.raises(records.RecordDecodeError, match="cannot decode"):
        records.decode(key, b"{", headers)


def test_unlabelled_protobuf_that_looks_like_json_is_protobuf() -> None:
    only_type = [("message-type", b"monitoring.v1.CommandMessage")]
    with pytest.raises(records.RecordDecodeError, match="JSON"):
        records.decode(None, b"{not json and not protobuf", only_type)


def test_record_without_type_header_uses_the_default_type() -> None:
    value = pb.CommandMessage(command_id="c1", agent_id="a", command="ping").SerializeToString()
    decoded = records.decode(b"a", value, None, default_type=pb.CommandMessage)
    assert decoded.agent_id == "a" and decoded.server_id is None


def test_stream_encoder_copies_headers_per_record() -> None:
    encoder = records.StreamEncoder(agent_id="web-1", server_id="s1")
    _, first = encoder.encode(pb.MetricsData(agent_id="web-1"))
    first.append(("extra", b"1"))
    _, second = encoder.encode(pb.MetricsData(agent_id="web-1"))
    assert ("extra", b"1") not in second and encoder.key == b"web-1"


def test_describe_metrics() -> None:
    m = pb.MetricsData(agent_id="web-1", sequence=3)
    m.cpu.percent, m.memory.percent, m.cpu.load_1m = 45.25, 67.9, 0.5
    m.disks.add(mountpoint="/", percent=41.0)
    m.disks.add(mountpoint="/var", percent=80.0)
    m.network.total.bytes_recv, m.network.total.bytes_sent = 2_000_000, 1_000_000
    assert records.describe_metrics(m) == (
        "[web-1 #3] CPU 45.2% | Memory 67.9% | Disk /var 80.0% | Load 0.50 | Net rx 2.0 MB tx 1.0 MB"
    )

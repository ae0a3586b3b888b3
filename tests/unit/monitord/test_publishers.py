"""monitord's own records: presence and command answers, encoded like every other record."""

from __future__ import annotations

from monitord.config import KafkaSection
from monitord.publishers import PresencePublisher, ResponsePublisher
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.monitord import RecordingPublisher


def test_presence_record() -> None:
    sink = RecordingPublisher()
    PresencePublisher(sink, KafkaSection(), "s1").publish(
        "web-1", pb.STALE, reason="stale: silent for 31s", peer="ipv4:1.2.3.4:5", hostname="web-1.example"
    )
    ((topic, status, what),) = sink.published
    assert topic == "agent-status" and what == "presence of agent 'web-1'"
    assert isinstance(status, pb.AgentStatus)
    assert (status.agent_id, status.state, status.reason, status.server_id) == (
        "web-1",
        pb.STALE,
        "stale: silent for 31s",
        "s1",
    )
    assert status.peer == "ipv4:1.2.3.4:5" and status.hostname == "web-1.example" and status.at.seconds > 0


def test_response_record() -> None:
    sink = RecordingPublisher()
    response = pb.CommandResponseMessage(command_id="c1", agent_id="web-1", status=pb.EXPIRED)
    ResponsePublisher(sink, KafkaSection(value_encoding="json"), "s1").publish(response)
    assert sink.published == [("command-responses", response, "response to command c1")]


def test_presence_record_carries_the_connection_and_a_given_date() -> None:
    sink = RecordingPublisher()
    publisher = PresencePublisher(sink, KafkaSection(), "s1")
    assert publisher.server_id == "s1"
    publisher.publish("web-1", pb.CONNECTED, connection=12, at=1_700_000_000.5)
    ((_, status, _),) = sink.published
    assert isinstance(status, pb.AgentStatus)
    assert status.connection == 12 and status.at.ToNanoseconds() == 1_700_000_000_500_000_000

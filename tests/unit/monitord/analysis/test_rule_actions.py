"""What a firing does: the command sent, its final response reported, bounds."""

from __future__ import annotations

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.analysis import FakeClock, FakeSink, actions, record, rule


def test_a_firing_sends_the_command() -> None:
    sink, clock = FakeSink(), FakeClock()
    hot = rule(name="disk-full", args=("{agent_id}", "/var", "x{agent_id}y"), timeout_seconds=5, ttl_seconds=60)
    acts = actions(sink, clock, hot)
    [event] = acts.on_metrics("web-1", record(cpu=91.2))
    assert event.kind == "rule_fired"
    assert event.text == "RULE disk-full fired for web-1: cpu.percent 91.2 > 90 for 1 sample → command info id1"
    [command] = sink.sent
    assert (command.command_id, command.agent_id, command.command) == ("id1", "web-1", "info")
    assert list(command.args) == ["web-1", "/var", "xweb-1y"]
    assert (command.timeout_seconds, command.ttl_seconds, command.requested_by) == (5, 60, "analyzer:disk-full")
    assert command.created_at.ToNanoseconds() == int(clock.now * 1e9)
    assert event.fields["command"]["commandId"] == "id1" and event.fields["value"] == 91.2


def test_final_response_is_correlated_with_the_rule() -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock)
    acts.on_metrics("web-1", record(cpu=95))
    assert acts.pending == 1
    delivered = pb.CommandResponseMessage(command_id="id1", status=pb.DELIVERED)
    assert acts.on_response(delivered) is None and acts.pending == 1
    assert acts.on_response(pb.CommandResponseMessage(command_id="other", status=pb.SUCCEEDED)) is None
    done = pb.CommandResponseMessage(command_id="id1", status=pb.SUCCEEDED, exit_code=0, stdout="pong\nmore\n")
    event = acts.on_response(done)
    assert event is not None and event.kind == "rule_result"
    assert event.text == "RULE hot on web-1: command id1 → SUCCEEDED exit 0: pong"
    assert event.fields["response"]["status"] == "SUCCEEDED"
    assert acts.on_response(done) is None and acts.pending == 0  # reported once


def test_refusals_and_failures_are_reported() -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock, rule(for_samples=1, cooldown_seconds=0))
    acts.on_metrics("web-1", record(1, 95))
    acts.on_metrics("web-1", record(2, 95))
    rejected = pb.CommandResponseMessage(command_id="id1", status=pb.REJECTED, message="unknown command 'info'")
    failed = pb.CommandResponseMessage(command_id="id2", status=pb.FAILED, exit_code=2)
    assert [e.text for e in (acts.on_response(rejected), acts.on_response(failed)) if e is not None] == [
        "RULE hot on web-1: command id1 → REJECTED: unknown command 'info'",
        "RULE hot on web-1: command id2 → FAILED exit 2",
    ]


def test_a_command_kafka_refused_is_reported_and_not_awaited() -> None:
    sink, clock = FakeSink(fail=True), FakeClock()
    acts = actions(sink, clock)
    [event] = acts.on_metrics("web-1", record(cpu=95))
    assert "→ command info NOT SENT: queue full" in event.text and event.fields["error"] == "queue full"
    assert acts.pending == 0


def test_pending_commands_are_bounded() -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock, rule(for_samples=1, cooldown_seconds=0), max_pending=2)
    for seq in range(1, 4):
        acts.on_metrics("web-1", record(seq, 95))
    assert acts.pending == 2
    assert acts.on_response(pb.CommandResponseMessage(command_id="id1", status=pb.SUCCEEDED)) is None
    assert acts.on_response(pb.CommandResponseMessage(command_id="id3", status=pb.SUCCEEDED)) is not None

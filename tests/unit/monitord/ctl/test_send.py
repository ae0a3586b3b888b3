"""``monitorctl send``: one command produced, ``--wait`` follows its responses (fake Kafka)."""

from __future__ import annotations

import json

import pytest

from monitord import records
from monitord.ctl import cli
from monitord.ctl.send import SendRequest, run_send
from monitord.errors import KafkaUnavailable
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.ctl import NOW, FakeKafka, FakeMessage, output


def send(kafka: FakeKafka, request: SendRequest, json_mode: bool = False) -> tuple[int, str, str]:
    o, out, err = output(json_mode)
    code = run_send(request, kafka.clients(), o, command_id="c0ffee", now=NOW, clock=kafka.clock)
    return code, out.getvalue(), err.getvalue()


def responder(kafka: FakeKafka, *replies: pb.CommandResponseMessage) -> None:
    """Answer every command on the commands topic with ``replies`` (command id filled in)."""

    def answer(msg: FakeMessage) -> None:
        if msg.topic() != "commands":
            return
        command = records.decode(msg.key(), msg.value(), msg.headers()).message
        assert isinstance(command, pb.CommandMessage)
        for reply in replies:
            response = pb.CommandResponseMessage()
            response.CopyFrom(reply)
            response.command_id = command.command_id
            response.agent_id = command.agent_id
            kafka.add("command-responses", response, command.agent_id)

    kafka.on_produce.append(answer)


def test_send_produces_one_command_and_prints_its_id() -> None:
    kafka = FakeKafka()
    request = SendRequest(
        agent_id="web-1",
        command="echo",
        args=("-n", "x"),
        timeout_seconds=10,
        ttl_seconds=60,
        requested_by="monitorctl:alice",
    )
    code, out, err = send(kafka, request)
    assert (code, out, err) == (0, "c0ffee\n", "")
    [msg] = kafka.produced
    assert msg.topic() == "commands" and msg.key() == b"web-1"
    assert records.header(msg.headers(), "content-type") == records.JSON
    assert records.header(msg.headers(), "message-type") == "monitoring.v1.CommandMessage"
    assert records.header(msg.headers(), "server-id") == "monitorctl"
    assert records.header(msg.headers(), "agent-id") == "web-1"
    command = records.decode(msg.key(), msg.value(), msg.headers()).message
    assert isinstance(command, pb.CommandMessage)
    assert (command.command_id, command.agent_id, command.command, list(command.args)) == (
        "c0ffee",
        "web-1",
        "echo",
        ["-n", "x"],
    )
    assert (command.timeout_seconds, command.ttl_seconds, command.requested_by) == (10, 60, "monitorctl:alice")
    assert command.created_at.ToNanoseconds() == int(NOW * 1e9)
    producer_conf = kafka.configs[-1]
    assert producer_conf["enable.idempotence"] is True and producer_conf["acks"] == "all"


def test_send_protobuf_encoding() -> None:
    kafka = FakeKafka()
    send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", encoding="protobuf"))
    assert records.header(kafka.produced[0].headers(), "content-type") == records.PROTOBUF


def test_send_json_output() -> None:
    kafka = FakeKafka()
    code, out, _ = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x"), json_mode=True)
    line = json.loads(out)
    assert code == 0 and line["type"] == "command" and line["record"]["commandId"] == "c0ffee"


@pytest.mark.parametrize(
    ("status", "code"),
    [(pb.SUCCEEDED, 0), (pb.FAILED, 1), (pb.TIMED_OUT, 124), (pb.REJECTED, 126), (pb.EXPIRED, 75), (pb.INVALID, 65)],
)
def test_wait_exits_with_the_final_status(status: pb.CommandStatus.ValueType, code: int) -> None:
    kafka = FakeKafka()
    responder(kafka, pb.CommandResponseMessage(status=pb.DELIVERED), pb.CommandResponseMessage(status=status))
    got, out, _ = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True))
    assert got == code
    assert out.splitlines()[:2] == ["c0ffee", "DELIVERED to web-1"]


def test_wait_prints_responses_and_output() -> None:
    kafka = FakeKafka()
    delivered = pb.CommandResponseMessage(status=pb.DELIVERED)
    final = pb.CommandResponseMessage(
        status=pb.SUCCEEDED, exit_code=0, duration_seconds=0.01, stdout="hello\n", stderr="note", stdout_truncated=True
    )
    responder(kafka, delivered, delivered, final)  # a repeated DELIVERED is shown once
    code, out, err = send(kafka, SendRequest(agent_id="web-1", command="echo", requested_by="x", wait=True))
    assert code == 0
    assert out == "c0ffee\nDELIVERED to web-1\nSUCCEEDED exit 0 in 0.01s\nhello\n[stdout truncated by the agent]\n"
    assert err == "note\n"


def test_wait_reader_starts_at_the_end_and_ignores_other_commands() -> None:
    kafka = FakeKafka()
    # Old records: an earlier final response to a command with the same id must not count.
    kafka.add("command-responses", pb.CommandResponseMessage(command_id="c0ffee", status=pb.FAILED), "web-1")
    kafka.add("command-responses", pb.CommandResponseMessage(command_id="other", status=pb.FAILED), "web-1")

    def answer(msg: FakeMessage) -> None:
        kafka.add("command-responses", pb.CommandResponseMessage(command_id="other", status=pb.FAILED), "web-1")
        kafka.append("command-responses", b"web-1", b"garbage", [("message-type", b"monitoring.v1.Nope")])
        kafka.add("command-responses", pb.CommandResponseMessage(command_id="c0ffee", status=pb.SUCCEEDED), "web-1")

    kafka.on_produce.append(answer)
    code, _, _ = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True))
    assert code == 0


def test_wait_json_lines() -> None:
    kafka = FakeKafka()
    responder(kafka, pb.CommandResponseMessage(status=pb.DELIVERED), pb.CommandResponseMessage(status=pb.REJECTED))
    code, out, _ = send(kafka, SendRequest(agent_id="web-1", command="x", requested_by="x", wait=True), json_mode=True)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 126
    assert [(line["type"], line["record"].get("status")) for line in lines] == [
        ("command", None),
        ("response", "DELIVERED"),
        ("response", "REJECTED"),
    ]


def test_wait_without_final_response_exits_69_after_the_timeout() -> None:
    kafka = FakeKafka()
    responder(kafka, pb.CommandResponseMessage(status=pb.DELIVERED))
    request = SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True, wait_timeout=5)
    code, out, err = send(kafka, request)
    assert code == 69
    assert out == "c0ffee\nDELIVERED to web-1\n"
    assert err == "monitorctl: no final response to command c0ffee within 5s (it was delivered)\n"
    assert 5 <= kafka.clock.now <= 5.5


def test_kafka_refusing_the_command_is_69() -> None:
    kafka = FakeKafka(delivery_error="Local: Message timed out")
    with pytest.raises(KafkaUnavailable, match="Message timed out"):
        send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x"))
    o, _out, err = output()
    args = cli.parse_args(["send", "web-1", "ping"])
    assert cli.run(args, kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW, new_id=lambda: "id") == 69
    assert "Kafka unavailable" in err.getvalue() and "Message timed out" in err.getvalue()
    assert kafka.produced == []


def presence(state: pb.AgentPresence.ValueType, connection: int, server: str = "m1") -> pb.AgentStatus:
    return pb.AgentStatus(agent_id="web-1", state=state, connection=connection, server_id=server)


def test_wait_ends_when_the_agent_holding_the_command_disconnects() -> None:
    kafka = FakeKafka()
    kafka.add("agent-status", presence(pb.DISCONNECTED, 9), "web-1")  # before the command: not read

    def agent_dies(msg: FakeMessage) -> None:
        if msg.topic() != "commands":
            return
        kafka.add("agent-status", presence(pb.DISCONNECTED, 5, "m0"), "web-1")  # an older stream, late
        kafka.add(
            "command-responses",
            pb.CommandResponseMessage(command_id="c0ffee", status=pb.DELIVERED, agent_id="web-1", connection=6),
            "web-1",
        )
        kafka.add("agent-status", presence(pb.DISCONNECTED, 6), "web-1")

    kafka.on_produce.append(agent_dies)
    request = SendRequest(agent_id="web-1", command="sleep", requested_by="x", wait=True, wait_timeout=30)
    code, out, err = send(kafka, request)
    assert code == 3
    assert out == "c0ffee\nDELIVERED to web-1\n"
    assert err == (
        "monitorctl: agent 'web-1' disconnected while running command c0ffee (DELIVERED at 2027-01-15T08:00:00Z); "
        "its final status will be written when it reconnects (FAILED if it restarted)\n"
    )
    assert kafka.clock.now < 30  # not after the --wait-timeout


def test_wait_disconnect_in_json_mode() -> None:
    kafka = FakeKafka()

    def agent_dies(msg: FakeMessage) -> None:
        if msg.topic() == "commands":
            kafka.add("agent-status", presence(pb.STALE, 6), "web-1")
            kafka.add(
                "command-responses",
                pb.CommandResponseMessage(command_id="c0ffee", status=pb.DELIVERED, agent_id="web-1", connection=6),
                "web-1",
            )

    kafka.on_produce.append(agent_dies)
    request = SendRequest(agent_id="web-1", command="sleep", requested_by="x", wait=True)
    code, out, err = send(kafka, request, json_mode=True)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 3
    assert [(x["type"], x["record"].get("status") or x["record"].get("state")) for x in lines] == [
        ("command", None),
        ("response", "DELIVERED"),
        ("presence", "STALE"),
    ]
    assert "disconnected while running command c0ffee" in err


def test_wait_a_final_response_before_the_disconnect_decides() -> None:
    kafka = FakeKafka()

    def answered_then_gone(msg: FakeMessage) -> None:
        if msg.topic() == "commands":
            for status in (pb.DELIVERED, pb.SUCCEEDED):
                response = pb.CommandResponseMessage(command_id="c0ffee", status=status, agent_id="web-1", connection=6)
                kafka.add("command-responses", response, "web-1")
            kafka.add("agent-status", presence(pb.DISCONNECTED, 6), "web-1")

    kafka.on_produce.append(answered_then_gone)
    code, _, err = send(kafka, SendRequest(agent_id="web-1", command="ping", requested_by="x", wait=True))
    assert code == 0 and err == ""

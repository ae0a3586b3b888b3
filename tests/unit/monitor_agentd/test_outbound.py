"""The outbound queue: what the writer sends next, and when it is woken."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from monitor_agentd.journal import CommandJournal
from monitor_agentd.outbound import Outbound, ResponseOutbox
from monitor_agentd.spool import Spool
from monitoring.v1 import monitoring_pb2 as pb


def record(seq: int) -> pb.MetricsData:
    return pb.MetricsData(agent_id="a", sequence=seq)


def response(command_id: str, status: pb.CommandStatus.ValueType = pb.DELIVERED) -> pb.CommandResponseMessage:
    return pb.CommandResponseMessage(command_id=command_id, status=status)


def kinds(outbound: Outbound) -> list[str]:
    out = []
    while (message := outbound.next_message()) is not None:
        out.append(str(message.WhichOneof("message")))
    return out


async def woken(outbound: Outbound) -> bool:
    """True if the writer would wake now (and consume that wake-up)."""
    try:
        await asyncio.wait_for(outbound.wait(), 0.01)
    except TimeoutError:
        return False
    return True


def test_control_first_then_responses_then_metrics() -> None:
    outbound = Outbound(Spool(10))
    outbound.add_record(record(1))
    outbound.add_response(response("c1"))
    outbound.add_control(pb.AgentMessage(heartbeat=pb.AgentHeartbeat(agent_id="a")))
    assert kinds(outbound) == ["heartbeat", "command_response", "metrics_data"]
    assert outbound.unacknowledged  # control is fire-and-forget, the others wait for acks


def test_every_producer_wakes_the_writer() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        assert not await woken(outbound)
        outbound.add_record(record(1))
        assert await woken(outbound) and not await woken(outbound)  # one wake-up per change
        outbound.add_response(response("c1"))
        assert await woken(outbound)
        outbound.add_control(pb.AgentMessage())
        assert await woken(outbound)
        outbound.finish()
        assert await woken(outbound) and outbound.finishing

    asyncio.run(scenario())


def test_the_last_ack_wakes_a_finishing_writer_for_its_goodbye() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        outbound.add_record(record(1))
        outbound.add_record(record(2))
        outbound.add_response(response("c1"))
        kinds(outbound)
        outbound.finish()
        await woken(outbound)
        outbound.ack_metrics(1, 1)
        assert not await woken(outbound)  # record 2 still outstanding
        outbound.ack_metrics(2, 2)
        assert await woken(outbound)
        assert not outbound.ready_for_goodbye  # the response is not acknowledged yet
        outbound.ack_response("c1", pb.DELIVERED)
        assert await woken(outbound) and outbound.ready_for_goodbye and not outbound.unacknowledged

    asyncio.run(scenario())


def test_discard_drops_and_wakes_when_empty() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        outbound.add_record(record(1))
        await woken(outbound)
        outbound.discard_metrics(1, 1)
        assert await woken(outbound) and outbound.spool.dropped == 1

    asyncio.run(scenario())


def test_rewind_replays_unacknowledged_and_hold_pauses_metrics() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        for seq in (1, 2, 3):
            outbound.add_record(record(seq))
        outbound.add_response(response("c1"))
        assert kinds(outbound) == ["command_response", "metrics_data", "metrics_data", "metrics_data"]
        outbound.ack_metrics(1, 1)
        outbound.hold()
        outbound.add_record(record(4))
        assert kinds(outbound) == []  # held until the rewind
        await woken(outbound)
        outbound.rewind()
        assert await woken(outbound)
        replayed = []
        while (message := outbound.next_message()) is not None:
            replayed.append(message.metrics_data.sequence if message.HasField("metrics_data") else "c1")
        assert replayed == ["c1", 2, 3, 4]

    asyncio.run(scenario())


def test_rewind_with_nothing_unacknowledged_does_not_wake() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        outbound.rewind()
        assert not await woken(outbound)

    asyncio.run(scenario())


def test_end_stream_wakes_and_start_stream_clears_it() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        outbound.end_stream()
        assert await woken(outbound) and outbound.ending_stream
        outbound.add_record(record(1))
        kinds(outbound)
        outbound.start_stream()
        assert not outbound.ending_stream and kinds(outbound) == ["metrics_data"]

    asyncio.run(scenario())


def test_response_outbox_keeps_each_status_until_acked() -> None:
    outbox = ResponseOutbox()
    outbox.add(response("c1", pb.DELIVERED))
    outbox.add(response("c1", pb.SUCCEEDED))
    assert len(outbox) == 2
    outbox.ack("c1", pb.DELIVERED)
    assert outbox.next_to_send() is not None and outbox.next_to_send() is None  # the acked one is skipped
    outbox.rewind()
    sent = outbox.next_to_send()
    assert sent is not None and sent.status == pb.SUCCEEDED
    outbox.ack("c1", pb.SUCCEEDED)
    outbox.ack("unknown", pb.FAILED)
    assert len(outbox) == 0


def test_unacknowledged_responses_survive_a_restart_and_are_sent_first(tmp_path: Path) -> None:
    journal = CommandJournal(tmp_path / "journal")
    journal.load()
    outbound = Outbound(Spool(10), journal)
    for r in (response("c1", pb.DELIVERED), response("c1", pb.SUCCEEDED), response("c2", pb.DELIVERED)):
        journal.record(r)  # the command runner journals each response before queueing it
        outbound.add_response(r)
    assert kinds(outbound) == ["command_response"] * 3
    outbound.ack_response("c1", pb.DELIVERED)
    outbound.ack_response("c2", pb.DELIVERED)
    journal.close()  # the agent is killed: c1's final was sent, never acknowledged

    again = CommandJournal(tmp_path / "journal")
    again.load()
    restarted = Outbound(Spool(10), again)
    restarted.add_record(record(1))
    restarted.start_stream()
    first = restarted.next_message()
    assert first is not None and first.command_response.command_id == "c1"
    assert first.command_response.status == pb.SUCCEEDED
    assert kinds(restarted) == ["metrics_data"]
    restarted.ack_response("c1", pb.SUCCEEDED)
    assert not restarted.responses
    again.close()
    third = CommandJournal(tmp_path / "journal")
    third.load()
    assert third.unacknowledged() == []  # the ack reached the disk too


@pytest.mark.parametrize(
    ("status", "left"),
    [(pb.SUCCEEDED, [("c1", pb.DELIVERED), ("c2", pb.DELIVERED)]), (pb.COMMAND_STATUS_UNSPECIFIED, [("c2", 1)])],
)
def test_a_permanent_refusal_settles_the_response_in_the_outbox_and_the_journal(
    tmp_path: Path, status: int, left: list[tuple[str, int]]
) -> None:
    journal = CommandJournal(tmp_path / "journal")
    journal.load()
    outbound = Outbound(Spool(10), journal)
    for r in (response("c1", pb.DELIVERED), response("c1", pb.SUCCEEDED), response("c2", pb.DELIVERED)):
        journal.record(r)
        outbound.add_response(r)
    # Without a status (monitord refused the response for its size) every response of the id goes.
    assert outbound.discard_responses("c1", status) == 3 - len(left)
    assert outbound.discard_responses("c1", status) == 0  # a second refusal finds nothing
    outbound.rewind()
    assert [(m.command_response.command_id, m.command_response.status) for m in drain(outbound)] == left
    journal.close()
    again = CommandJournal(tmp_path / "journal")
    again.load()
    assert [(r.command_id, r.status) for r in again.unacknowledged()] == left  # settled on disk too
    again.close()


def test_refusing_the_last_response_lets_a_finishing_writer_say_goodbye() -> None:
    async def scenario() -> None:
        outbound = Outbound(Spool(10))
        outbound.add_response(response("c1", pb.DELIVERED))
        outbound.finish()
        assert await woken(outbound) and not outbound.ready_for_goodbye
        outbound.discard_responses("c1", pb.COMMAND_STATUS_UNSPECIFIED)
        assert await woken(outbound) and outbound.ready_for_goodbye

    asyncio.run(scenario())


def drain(outbound: Outbound) -> list[pb.AgentMessage]:
    out = []
    while (message := outbound.next_message()) is not None:
        out.append(message)
    return out

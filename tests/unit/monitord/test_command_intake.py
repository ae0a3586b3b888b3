"""The commands consumer: every partition assigned without a group, a replay over the maximum TTL
before anything is pushed or answered, duties from a paused static group member, presence records
handed on, batches handed to the router on the event loop."""

from __future__ import annotations

import asyncio
import logging

import confluent_kafka
import pytest

from monitord import command_intake
from monitord.command_intake import CommandIntake
from monitord.commands import CommandRouter
from monitord.config import MonitordConfig, ServerSection
from monitord.publishers import PresencePublisher, ResponsePublisher
from monitord.sessions import SessionRegistry
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.monitord import (
    WAIT,
    ConsumerFactory,
    FakeContext,
    FakeMessage,
    RecordingPublisher,
    message,
    until,
)

CFG = MonitordConfig(server=ServerSection(server_id="s1"))


class Rig:
    def __init__(self, consumers: ConsumerFactory) -> None:
        self.sink = RecordingPublisher()
        self.sessions = SessionRegistry(PresencePublisher(self.sink, CFG.kafka, "s1"), max_inflight_total=10)
        self.router = CommandRouter(CFG.commands, self.sessions, ResponsePublisher(self.sink, CFG.kafka, "s1"), "s1")
        self.presence: list[pb.AgentStatus] = []
        self.intake = CommandIntake(CFG, self.router, consumers, on_presence=self.presence.append)


def command(command_id: str, offset: int, encoding: str = "protobuf") -> FakeMessage:
    proto = pb.CommandMessage(command_id=command_id, agent_id="web-1", command="ping")
    return message("commands", proto, "web-1", encoding, offset=offset)


def test_records_reach_the_router_and_duties_come_from_a_static_group_member() -> None:
    async def scenario() -> None:
        consumers = ConsumerFactory()
        rig = Rig(consumers)
        rig.intake.start()
        assert await rig.intake.wait_ready(WAIT)
        reader = consumers.reader()
        assert "group.instance.id" not in reader.conf and reader.conf["enable.auto.commit"] is False
        assert [(tp.topic, tp.offset) for tp in reader.assigned] == [
            ("commands", 0),
            ("command-responses", 0),
            ("agent-status", -1),  # presence: from the end
        ]
        assert rig.intake.stats.partitions_assigned == 3
        await until(lambda: rig.router.stats.partitions_owned == 1, what="the duty assignment")
        duty = consumers.duty()
        assert duty.conf["group.id"] == "monitord-commands" and duty.conf["group.instance.id"] == "s1"
        assert duty.topics == ["commands"] and len(duty.paused) == 1  # it never fetches a record
        reader.feed(
            command("c1", 0),
            command("c2", 1, "json"),
            FakeMessage("commands", b"k", b"v", _error="Broker: Unknown topic"),
            FakeMessage("command-responses", b"web-1", b"\xff", [("message-type", b"nope")]),
            message("agent-status", pb.AgentStatus(agent_id="web-1", state=pb.CONNECTED), "web-1"),
        )
        await until(lambda: rig.router.held == 2 and len(rig.presence) == 1, what="two commands held")
        delivered = pb.CommandResponseMessage(command_id="c1", agent_id="web-1", status=pb.DELIVERED)
        reader.feed(message("command-responses", delivered, "web-1"))
        await until(lambda: rig.router.held == 1, what="c1 no longer held")
        await rig.intake.close()
        assert reader.closed.is_set() and duty.closed.is_set()

        ctx = FakeContext()
        async with rig.sessions.opened("web-1", "p", ctx.write, max_inflight=1) as session:
            rig.router.on_connect(session)
            await until(lambda: len(ctx.written) == 1, what="c2 delivered on connect")
            session.said_goodbye()
        assert ctx.written[0].command.command_id == "c2"

    asyncio.run(scenario())


def test_held_commands_are_rebuilt_by_the_replay_before_anything_is_delivered() -> None:
    async def scenario() -> None:
        consumers = ConsumerFactory(ends={("commands", 0): 3, ("command-responses", 0): 2})
        rig = Rig(consumers)
        ctx = FakeContext()
        async with rig.sessions.opened("web-1", "p", ctx.write, max_inflight=5) as session:
            rig.router.on_connect(session)  # connected before the replay ends: nothing yet
            rig.intake.start()
            await asyncio.wait_for(asyncio.to_thread(consumers.made_reader.wait, WAIT), WAIT)
            await until(lambda: bool(consumers.reader().assigned), what="the assignment")
            reader = consumers.reader()
            done = pb.CommandResponseMessage(command_id="c0", agent_id="web-1", status=pb.SUCCEEDED)
            reader.feed(command("c0", 0), command("c1", 1), message("command-responses", done, "web-1", offset=0))
            await until(lambda: rig.router.held == 1, what="c1 held, c0 ended")
            assert not rig.intake.ready.is_set() and ctx.written == []
            delivered = pb.CommandResponseMessage(command_id="c2", agent_id="web-1", status=pb.DELIVERED)
            reader.feed(message("command-responses", delivered, "web-1", offset=1), command("c2", 2))
            assert await rig.intake.wait_ready(WAIT)
            await until(lambda: len(ctx.written) == 1, what="the held command pushed")
            assert ctx.written[0].command.command_id == "c1" and rig.intake.stats.replayed == 5
            session.said_goodbye()
        await rig.intake.close()

    asyncio.run(scenario())


def test_a_failing_consumer_is_logged_and_closed(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(ConsumerFactory):
        def __call__(self, conf: dict[str, object]) -> object:  # type: ignore[override]
            consumer = super().__call__(conf)

            def poll(timeout: float) -> None:
                raise RuntimeError("consumer broke")

            consumer.poll = poll  # type: ignore[assignment,method-assign]
            return consumer

    async def scenario() -> None:
        factory = Broken()
        rig = Rig(factory)  # type: ignore[arg-type]
        rig.intake.start()
        await until(lambda: len(factory.made) == 2 and all(c.closed.is_set() for c in factory.made), what="closed")
        assert not await rig.intake.wait_ready(0.05)
        await rig.intake.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "Commands consumer failed" in caplog.text and "Commands duty consumer failed" in caplog.text
    assert "Commands replay not done after 0.05s" in caplog.text


def test_partitions_added_while_running_are_read_from_their_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command_intake, "RECHECK_PARTITIONS_SECONDS", 0.01)

    async def scenario() -> None:
        consumers = ConsumerFactory()
        rig = Rig(consumers)
        rig.intake.start()
        assert await rig.intake.wait_ready(WAIT)
        reader = consumers.reader()
        reader.partitions = 2  # an operator added a partition to every topic
        await until(lambda: len(reader.assigned) == 6, what="the new partitions assigned")
        assert {(tp.topic, tp.partition, tp.offset) for tp in reader.assigned[3:]} == {
            (topic, 1, -2) for topic in ("commands", "command-responses", "agent-status")
        }
        reader.feed(command("c9", 0))
        await until(lambda: rig.router.held == 1, what="records still flow")
        await rig.intake.close()

    asyncio.run(scenario())


def test_a_kafka_error_while_planning_the_replay_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    class OneBrokerDown(ConsumerFactory):  # a restart while one bootstrap broker is away
        def __call__(self, conf: dict[str, object]) -> object:  # type: ignore[override]
            consumer = super().__call__(conf)
            real, failures = consumer.offsets_for_times, [1]

            def offsets_for_times(partitions: list[object], timeout: float) -> list[object]:
                if failures:
                    failures.pop()
                    raise confluent_kafka.KafkaException("Broker handle destroyed without termination")
                return real(partitions, timeout)  # type: ignore[no-any-return]

            consumer.offsets_for_times = offsets_for_times  # type: ignore[assignment,method-assign]
            return consumer

    async def scenario() -> None:
        rig = Rig(OneBrokerDown())  # type: ignore[arg-type]
        rig.intake.start()
        assert await rig.intake.wait_ready(WAIT)  # the replay was planned again, and read
        await rig.intake.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "cannot plan the replay yet" in caplog.text and "Commands consumer failed" not in caplog.text

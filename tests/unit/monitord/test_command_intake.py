"""The commands consumer: its own group per instance, start offsets pinned at assignment, batches
handed to the router on the event loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

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


def test_commands_and_responses_reach_the_router() -> None:
    async def scenario() -> None:
        sink = RecordingPublisher()
        sessions = SessionRegistry(PresencePublisher(sink, CFG.kafka, "s1"), max_inflight_total=10)
        router = CommandRouter(CFG.commands, sessions, ResponsePublisher(sink, CFG.kafka, "s1"), "s1")
        consumers = ConsumerFactory()
        intake = CommandIntake(CFG, router, consumers)
        intake.start()
        await asyncio.wait_for(intake.assigned.wait(), WAIT)
        consumer = consumers.made[0]
        assert consumer.conf["group.id"] == "monitord-commands.s1"
        assert consumer.topics == ["commands", "command-responses"]
        assert [tp.offset for tp in consumer.assigned] == [7, 7]  # no committed offset: the current end
        assert intake.stats.partitions_assigned == 2
        consumer.feed(
            message("commands", pb.CommandMessage(command_id="c1", agent_id="web-1", command="ping"), "web-1"),
            message("commands", pb.CommandMessage(command_id="c2", agent_id="web-1", command="ping"), "web-1", "json"),
            FakeMessage("commands", b"k", b"v", _error="Broker: Unknown topic"),
            FakeMessage("command-responses", b"web-1", b"\xff", [("message-type", b"nope")]),
        )
        await until(lambda: router.held == 2, what="two commands held")
        consumer.feed(
            message(
                "command-responses",
                pb.CommandResponseMessage(command_id="c1", agent_id="web-1", status=pb.DELIVERED),
                "web-1",
            )
        )
        await until(lambda: router.held == 1, what="c1 no longer held")
        await intake.close()
        assert consumer.closed.is_set()

        ctx = FakeContext()
        async with sessions.opened("web-1", "p", ctx.write, max_inflight=1) as session:
            router.on_connect(session)
            await until(lambda: len(ctx.written) == 1, what="c2 delivered on connect")
            session.said_goodbye()
        assert ctx.written[0].command.command_id == "c2"

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
        sink = RecordingPublisher()
        sessions = SessionRegistry(PresencePublisher(sink, CFG.kafka, "s1"), max_inflight_total=10)
        router = CommandRouter(CFG.commands, sessions, ResponsePublisher(sink, CFG.kafka, "s1"), "s1")
        factory = Broken()
        intake = CommandIntake(CFG, router, factory)  # type: ignore[arg-type]
        intake.start()
        await until(lambda: bool(factory.made) and factory.made[0].closed.is_set(), what="the consumer closed")
        await intake.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "Commands consumer failed" in caplog.text

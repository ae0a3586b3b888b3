"""Command routing: pushed at once to a connected agent, held for one that is not, delivered when it
connects, answered EXPIRED or INVALID by monitord itself (by the instance whose turn it is for the
partition, once), bounded; nothing pushed or answered before the start-up replay ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from monitord import records
from monitord.command_parse import deadline_of, parse
from monitord.commands import CommandRouter
from monitord.config import CommandsSection, KafkaSection
from monitord.errors import InvalidCommand
from monitord.publishers import PresencePublisher, ResponsePublisher
from monitord.sessions import SessionRegistry
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.monitord import FakeContext, RecordingPublisher, until

NOW = 1_700_000_000.0
CFG = CommandsSection()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Rig:
    """A router over a real session registry; answers land in ``sink``."""

    def __init__(self, cfg: CommandsSection = CFG, *, live: bool = True) -> None:
        self.sink = RecordingPublisher()
        self.clock = Clock()
        self.sessions = SessionRegistry(PresencePublisher(self.sink, KafkaSection(), "s1"), max_inflight_total=10)
        self.router = CommandRouter(
            cfg, self.sessions, ResponsePublisher(self.sink, KafkaSection(), "s1"), "s1", clock=self.clock
        )
        self.router.set_owned(frozenset({0}))
        if live:
            self.router.replay_done()

    def command(self, command_id: str, agent_id: str = "web-1", partition: int = 0, **fields: object) -> None:
        message = pb.CommandMessage(command_id=command_id, agent_id=agent_id, command="ping", **fields)  # type: ignore[arg-type]
        key, value, headers = records.encode(message, agent_id=agent_id, server_id="monitorctl")
        self.router.on_record(key, value, headers, partition=partition, written_at=self.clock.now)

    def read_back(self, command_id: str, status: pb.CommandStatus.ValueType, agent_id: str = "web-1") -> None:
        """A response read from command-responses."""
        response = pb.CommandResponseMessage(command_id=command_id, agent_id=agent_id, status=status)
        self.router.on_response(response, from_kafka=True)

    def answers(self) -> list[tuple[str, str, str]]:
        return [
            (r.command_id, pb.CommandStatus.Name(r.status), r.message)
            for r in self.sink.on("command-responses")
            if isinstance(r, pb.CommandResponseMessage)
        ]

    @contextlib.asynccontextmanager
    async def connected(self, agent_id: str = "web-1") -> AsyncIterator[FakeContext]:
        """An open stream of ``agent_id`` for the duration of the block."""
        ctx = FakeContext()
        opened, done = asyncio.Event(), asyncio.Event()

        async def stream() -> None:
            async with self.sessions.opened(agent_id, "p", ctx.write, max_inflight=5) as session:
                self.router.on_connect(session)
                opened.set()
                await done.wait()
                session.said_goodbye()

        task = asyncio.create_task(stream())
        await asyncio.wait_for(opened.wait(), 5)
        try:
            yield ctx
        finally:
            done.set()
            await asyncio.wait_for(task, 5)


def pushed(ctx: FakeContext) -> list[str]:
    return [m.command.command_id for m in ctx.written if m.HasField("command")]


def test_a_command_for_a_connected_agent_is_pushed_at_once() -> None:
    async def scenario() -> None:
        rig = Rig()
        async with rig.connected() as ctx:
            rig.command("c1", args=["-n"])
            await until(lambda: pushed(ctx) == ["c1"], what="the push")
            command = ctx.written[0].command
            assert command.agent_id == "web-1" and list(command.args) == ["-n"] and command.HasField("expires_at")
        assert rig.router.stats.pushed == 1 and rig.router.stats.held == 1  # until the agent says DELIVERED
        rig.router.on_response(pb.CommandResponseMessage(command_id="c1", agent_id="web-1", status=pb.DELIVERED))
        assert rig.router.stats.held == 0

    asyncio.run(scenario())


def test_held_commands_are_delivered_when_the_agent_connects_and_duplicates_ignored() -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.command("c1")
        rig.command("c1")  # the same command read twice
        rig.command("c2")
        assert rig.router.held == 2 and rig.router.stats.held == 2
        async with rig.connected() as ctx:
            await until(lambda: sorted(pushed(ctx)) == ["c1", "c2"], what="held commands delivered")
            rig.read_back("c1", pb.SUCCEEDED)
        rig.command("c1")  # answered already: a re-read is ignored
        assert rig.router.held == 1
        async with rig.connected() as ctx:  # still not DELIVERED: pushed again on the next connect
            await until(lambda: pushed(ctx) == ["c2"], what="c2 pushed again")

    asyncio.run(scenario())


def test_commands_nobody_delivered_expire_after_the_grace() -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.command("c1", ttl_seconds=10)
        rig.command("old", agent_id="web-2", ttl_seconds=5, created_at={"seconds": int(NOW) - 60})
        rig.clock.now += 11  # past c1's deadline, not past the grace for a DELIVERED on its way
        rig.router.expire_due()
        assert rig.router.held == 1 and [a[0] for a in rig.answers()] == ["old"]
        rig.clock.now += CFG.answer_grace_seconds
        rig.router.expire_due()
        assert rig.router.held == 0 and rig.router.stats.held == 0
        assert sorted(rig.answers()) == [
            ("c1", "EXPIRED", "agent did not connect before the command expired"),
            ("old", "EXPIRED", "expired before it was delivered"),
        ]
        response = rig.sink.on("command-responses")[0]
        assert isinstance(response, pb.CommandResponseMessage) and response.reported_by == "monitord:s1"
        assert rig.router.stats.answered_by_status == {"EXPIRED": 2}

    asyncio.run(scenario())


def test_only_the_partitions_owner_answers_and_once_read_back_never_again() -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.command("mine", ttl_seconds=1, partition=0)
        rig.command("theirs", ttl_seconds=1, partition=1)
        rig.command("settled", ttl_seconds=1, partition=0)
        rig.clock.now += 1 + CFG.answer_grace_seconds
        rig.read_back("settled", pb.EXPIRED)  # another instance's answer was read first
        rig.router.expire_due()
        assert [a[0] for a in rig.answers()] == ["mine"] and rig.router.stats.owed == 2
        rig.read_back("mine", pb.EXPIRED)  # our own answer, read back
        rig.router.expire_due()
        assert [a[0] for a in rig.answers()] == ["mine"]
        rig.router.set_owned(frozenset({0, 1}))  # the owner of partition 1 is gone: its duty is ours now
        rig.router.expire_due()
        rig.router.expire_due()  # written once: it stays owed until read back, but is not written twice
        assert [a[0] for a in rig.answers()] == ["mine", "theirs"]
        failed = rig.sink.failures[-1]
        assert failed is not None
        failed()  # Kafka refused it: written again
        rig.router.expire_due()
        assert [a[0] for a in rig.answers()] == ["mine", "theirs", "theirs"]
        assert rig.router.final_status("mine") == pb.EXPIRED and rig.router.final_status("theirs") is None

    asyncio.run(scenario())


def test_a_delivered_command_is_never_answered_by_monitord() -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.command("c1", ttl_seconds=1)
        rig.router.on_response(pb.CommandResponseMessage(command_id="c1", agent_id="web-1", status=pb.DELIVERED))
        rig.clock.now += 10
        rig.router.expire_due()
        assert rig.answers() == [] and rig.router.held == 0

    asyncio.run(scenario())


def test_nothing_is_pushed_or_answered_before_the_replay_ends() -> None:
    async def scenario() -> None:
        rig = Rig(live=False)
        async with rig.connected() as ctx:
            rig.command("c1")
            rig.command("c2")
            rig.command("gone", ttl_seconds=1, created_at={"seconds": int(NOW) - 60})
            rig.read_back("c2", pb.DELIVERED)  # replayed: c2 reached its agent before the restart
            rig.router.expire_due()
            await asyncio.sleep(0.01)
            assert pushed(ctx) == [] and rig.answers() == []
            rig.router.replay_done()
            await until(lambda: pushed(ctx) == ["c1"], what="the held command pushed after the replay")
            rig.router.expire_due()
            assert rig.answers() == [("gone", "EXPIRED", "expired before it was delivered")]

    asyncio.run(scenario())


def test_invalid_records_are_answered_invalid_when_they_carry_an_id() -> None:
    async def scenario() -> None:
        rig = Rig()
        bad = json.dumps({"commandId": "c9", "agentId": "web-1"}).encode()  # no command name
        rig.router.on_record(b"web-1", bad, [("message-type", b"monitoring.v1.CommandMessage")])
        rig.router.on_record(b"web-1", b"\xff\xfe", None)  # unreadable, no id: logged only
        rig.router.on_record(b"web-1", b"", None)
        rig.router.expire_due()
        assert rig.answers() == [("c9", "INVALID", "no command name")]
        assert rig.router.held == 0

    asyncio.run(scenario())


def test_a_command_without_an_id_gets_one_from_its_position() -> None:
    rig = Rig(live=False)
    value = pb.CommandMessage(agent_id="web-1", command="ping").SerializeToString()
    rig.router.on_record(b"web-1", value, [("message-type", b"monitoring.v1.CommandMessage")], partition=2, offset=41)
    rig.router.on_record(b"web-1", value, [("message-type", b"monitoring.v1.CommandMessage")], partition=2, offset=41)
    assert rig.router.held == 1


def test_held_commands_are_bounded() -> None:
    async def scenario() -> None:
        rig = Rig(CommandsSection(max_pending_per_agent=2, max_pending_total=3))
        for n in range(3):
            rig.command(f"a{n}", agent_id="web-1")
        assert rig.router.held == 2  # the oldest of web-1 was dropped
        rig.command("b0", agent_id="web-2")
        rig.command("b1", agent_id="web-2")  # total bound: the largest queue loses its oldest
        assert rig.router.held == 3 and rig.router.stats.held == 3
        rig.router.expire_due()
        assert {a[0] for a in rig.answers()} == {"a0", "a1"}
        assert all(a[1] == "EXPIRED" and a[2].startswith("dropped: too many commands held") for a in rig.answers())

    asyncio.run(scenario())


def test_expiry_loop_runs_until_cancelled() -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.command("c1", ttl_seconds=1)
        rig.clock.now += 5 + CFG.answer_grace_seconds
        task = asyncio.create_task(rig.router.run_expiry(period=0.01))
        await until(lambda: rig.router.held == 0, what="the expiry loop")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_failed_push_keeps_the_command_held() -> None:
    async def scenario() -> None:
        rig = Rig()
        opened, done = asyncio.Event(), asyncio.Event()

        async def broken_write(_message: pb.ServerMessage) -> None:
            raise ConnectionError("stream gone")

        async def stream() -> None:
            async with rig.sessions.opened("web-1", "p", broken_write, max_inflight=1) as session:
                opened.set()
                await done.wait()
                session.said_goodbye()

        task = asyncio.create_task(stream())
        await asyncio.wait_for(opened.wait(), 5)
        rig.command("c1")
        await until(lambda: rig.router.stats.pushed == 1, what="the push attempt")
        await asyncio.sleep(0.01)
        assert rig.router.held == 1
        done.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("key", "command", "problem"),
    [
        (b"web-2", pb.CommandMessage(command_id="c", agent_id="web-1", command="ping"), "differ"),
        (None, pb.CommandMessage(command_id="c", command="ping"), "no agent id"),
        (None, pb.CommandMessage(command_id="c", agent_id="a", command="x", args=["a"] * 65), "65 arguments"),
        (None, pb.CommandMessage(command_id="c", agent_id="a", command="x", args=["a" * 5000]), "longer than 4096"),
    ],
)
def test_parse_refuses(key: bytes | None, command: pb.CommandMessage, problem: str) -> None:
    value = command.SerializeToString()
    with pytest.raises(InvalidCommand, match=problem):
        parse(key, value, [("message-type", b"monitoring.v1.CommandMessage")], CFG, NOW)


@pytest.mark.parametrize(
    ("key", "fields", "problem"),
    [
        (b"ghost\n1", {"command_id": "c", "command": "ping"}, "record key 'ghost\\\\n1' is not an agent id"),
        (None, {"command_id": "c" * 129, "agent_id": "a", "command": "ping"}, "command id 'c"),
        (None, {"command_id": "c 1", "agent_id": "a", "command": "ping"}, "is not an id"),
        (None, {"command_id": "c", "agent_id": "-a", "command": "ping"}, "agent id '-a' is not an id"),
        (None, {"command_id": "c", "agent_id": "a", "command": "x" * 129}, "command name of 129 characters"),
        (None, {"command_id": "c", "agent_id": "a", "command": "x", "requested_by": "r" * 257}, "requested_by of 257"),
        (None, {"command_id": "c", "agent_id": "a", "command": "x", "args": ["a" * 70_000]}, "record of 70"),
    ],
)
def test_parse_bounds_every_field(key: bytes | None, fields: dict[str, object], problem: str) -> None:
    value = pb.CommandMessage(**fields).SerializeToString()  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match=problem):
        parse(key, value, [("message-type", b"monitoring.v1.CommandMessage")], CFG, NOW)


def test_held_commands_are_bounded_in_bytes_and_invalid_answers_echo_little() -> None:
    async def scenario() -> None:
        rig = Rig(CommandsSection(max_pending_bytes=2048, max_args=64, max_arg_bytes=4096))
        for n in range(4):
            rig.command(f"big{n}", agent_id=f"ghost-{n}", args=["x" * 1000])  # about 1 KB each
        assert rig.router.held == 2  # room is made before each: the oldest went first, answered EXPIRED
        rig.router.expire_due()
        assert [a[:2] for a in rig.answers()] == [(f"big{n}", "EXPIRED") for n in range(2)]
        bad = pb.CommandMessage(command_id="c9", agent_id="web-1", command="x" * 129, requested_by="r" * 300)
        rig.router.on_record(b"web-1", bad.SerializeToString(), [("message-type", b"monitoring.v1.CommandMessage")])
        rig.router.expire_due()
        (invalid,) = [r for r in rig.sink.on("command-responses") if r.command_id == "c9"]  # type: ignore[attr-defined]
        assert len(invalid.command) == 128 and len(invalid.requested_by) == 256  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_an_agent_cannot_settle_another_agents_command(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.command("b-only", agent_id="web-b")
        forged = pb.CommandResponseMessage(command_id="b-only", agent_id="web-a", status=pb.SUCCEEDED)
        rig.router.on_response(forged, from_kafka=True)
        rig.router.on_response(forged)
        assert rig.router.held == 1 and rig.router.final_status("b-only") is None
        async with rig.connected("web-b") as ctx:
            await until(lambda: pushed(ctx) == ["b-only"], what="B's command still delivered")

    with caplog.at_level("WARNING"):
        asyncio.run(scenario())
    assert "Agent 'web-a' answered command b-only, which is agent 'web-b''s: ignored" in caplog.text


def test_parse_fills_in_ids_and_refuses_other_types() -> None:
    value = pb.CommandMessage(command="ping").SerializeToString()
    command = parse(b"web-1", value, [("message-type", b"monitoring.v1.CommandMessage")], CFG, NOW, fallback_id="x")
    assert command.agent_id == "web-1" and command.command_id == "x" and command.created_at.seconds == int(NOW)
    with pytest.raises(InvalidCommand, match="no command id"):
        parse(b"web-1", value, [("message-type", b"monitoring.v1.CommandMessage")], CFG, NOW)
    status = pb.AgentStatus(agent_id="a").SerializeToString()
    with pytest.raises(InvalidCommand, match="AgentStatus record, not a CommandMessage"):
        parse(b"a", status, [("message-type", b"monitoring.v1.AgentStatus")], CFG, NOW)
    with pytest.raises(InvalidCommand, match="not a CommandMessage"):
        parse(b"a", b"{", None, CFG, NOW)


def test_deadline_of() -> None:
    explicit = pb.CommandMessage()
    explicit.expires_at.FromSeconds(int(NOW) + 30)
    explicit.created_at.FromSeconds(int(NOW))
    assert deadline_of(explicit, CFG, NOW) == NOW + 30
    capped = pb.CommandMessage(ttl_seconds=10**6)
    capped.created_at.FromSeconds(int(NOW))
    assert deadline_of(capped, CFG, NOW) == NOW + CFG.max_ttl_seconds
    default = pb.CommandMessage()
    assert deadline_of(default, CFG, NOW) == NOW + CFG.default_ttl_seconds and default.HasField("expires_at")

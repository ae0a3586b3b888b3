"""One agent stream: acks only after Kafka confirmed, in order, coalesced; negative acks say whether
to retry; limits refuse; the in-flight bound stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from confluent_kafka import KafkaError

from monitord.commands import CommandRouter
from monitord.config import LimitsSection, MonitordConfig, ServerSection
from monitord.kafka_bridge import KafkaProducerBridge
from monitord.publishers import PresencePublisher, ResponsePublisher
from monitord.sessions import SessionRegistry
from monitord.stats import ServerStats
from monitord.stream_handler import AgentStream
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.monitord import WAIT, FakeContext, ProducerFactory, RecordingPublisher, until


class Inbox:
    """The agent's side of the stream: what it sends, then its half-close."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        self.taken = 0

    def send(self, *messages: pb.AgentMessage) -> None:
        for message in messages:
            self._queue.put_nowait(message)

    def close(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> bytes:  # as grpc hands them over: monitord decodes
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        self.taken += 1
        return message.SerializeToString()


def metrics(sequence: int, agent_id: str = "web-1", **fields: object) -> pb.AgentMessage:
    return pb.AgentMessage(metrics_data=pb.MetricsData(agent_id=agent_id, sequence=sequence, **fields))  # type: ignore[arg-type]


@dataclasses.dataclass
class Rig:
    inbox: Inbox
    ctx: FakeContext
    factory: ProducerFactory
    stats: ServerStats
    sessions: SessionRegistry
    sink: RecordingPublisher
    router: CommandRouter
    task: asyncio.Task[None]

    def acks(self) -> list[pb.Ack]:
        return [m.acknowledgment for m in self.ctx.written if m.HasField("acknowledgment")]

    def ranges(self) -> list[tuple[int, int, bool]]:
        return [(a.first_sequence, a.last_sequence, a.success) for a in self.acks() if a.kind == pb.ACK_KIND_METRICS]


@contextlib.asynccontextmanager
async def stream(cfg: MonitordConfig | None = None, *, auto: bool = False) -> AsyncIterator[Rig]:
    cfg = cfg or MonitordConfig(server=ServerSection(server_id="s1"))
    factory = ProducerFactory(auto=auto)
    bridge = KafkaProducerBridge(cfg.kafka, client_id="t", producer_factory=factory)
    await bridge.start()
    sink = RecordingPublisher()
    sessions = SessionRegistry(
        PresencePublisher(sink, cfg.kafka, "s1"), max_inflight_total=cfg.server.max_inflight_total
    )
    router = CommandRouter(cfg.commands, sessions, ResponsePublisher(sink, cfg.kafka, "s1"), "s1")
    stats, inbox, ctx = ServerStats(), Inbox(), FakeContext()

    async def serve() -> None:
        async with sessions.opened("web-1", "p", ctx.write, max_inflight=cfg.server.max_inflight_per_stream) as session:
            await AgentStream(cfg, session, bridge, stats, router).run(inbox)

    task = asyncio.create_task(serve())
    try:
        yield Rig(inbox, ctx, factory, stats, sessions, sink, router, task)
    finally:
        if not task.done():
            inbox.close()
            factory.producer.auto = True
        await asyncio.wait({task}, timeout=WAIT)
        assert task.done(), "the stream did not end"
        if not task.cancelled():
            task.result()
        await bridge.close(timeout=1)


def test_acks_wait_for_kafka_and_cover_confirmed_ranges() -> None:
    async def scenario() -> None:
        async with stream() as rig:
            rig.inbox.send(*(metrics(n) for n in range(1, 5)))
            await until(lambda: len(rig.factory.producer.produced) == 4, what="four records produced")
            await asyncio.sleep(0.05)
            assert rig.acks() == []  # nothing acknowledged before Kafka confirmed
            rig.factory.producer.release(3)
            await until(lambda: rig.ranges() != [], what="the first ack")
            await until(lambda: sum(b - a + 1 for a, b, _ in rig.ranges()) == 3, what="acks for 1..3")
            assert all(ok for _, _, ok in rig.ranges()) and rig.ranges()[0][0] == 1
            rig.factory.producer.release(1)
            await until(lambda: rig.ranges()[-1][1] == 4, what="the ack of #4")
            rig.inbox.close()
            await asyncio.wait_for(rig.task, WAIT)
            assert rig.stats.forwarded == 4 and rig.stats.received == 4
            ack = rig.acks()[-1]
            assert ack.server_id == "s1" and ack.message == "stored in Kafka"
        assert rig.sessions.inflight.in_use == 0

    asyncio.run(scenario())


def test_records_confirmed_together_get_one_ack() -> None:
    async def scenario() -> None:
        async with stream() as rig:
            rig.inbox.send(*(metrics(n) for n in range(1, 6)))
            await until(lambda: rig.factory.producer.waiting == 5, what="five records produced")
            rig.factory.producer.release(5)
            await until(lambda: bool(rig.ranges()) and rig.ranges()[-1][1] == 5, what="acks up to #5")
            assert rig.ranges() == [(1, 5, True)]
            assert rig.stats.acks == 1 and rig.stats.forwarded == 5

    asyncio.run(scenario())


def test_failed_deliveries_get_negative_acks_saying_whether_to_retry() -> None:
    async def scenario() -> None:
        async with stream() as rig:
            rig.inbox.send(metrics(1), metrics(2), metrics(3))
            await until(lambda: rig.factory.producer.waiting == 3, what="three records produced")
            producer = rig.factory.producer
            producer.release(1, KafkaError(KafkaError._MSG_TIMED_OUT))
            producer.release(1, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
            producer.release(1)
            await until(lambda: len(rig.acks()) == 3, what="three acks")
            first, second, third = rig.acks()
            assert (first.success, first.retriable, first.last_sequence) == (False, True, 1)
            assert (second.success, second.retriable, second.last_sequence) == (False, False, 2)
            assert "Kafka delivery failed" in first.message
            assert (third.success, third.first_sequence) == (True, 3)  # never folded into a failure
            assert rig.stats.failed == 2

    asyncio.run(scenario())


def test_limits_and_identity_are_refused_without_kafka() -> None:
    async def scenario() -> None:
        cfg = MonitordConfig(server=ServerSection(server_id="s1", limits=LimitsSection(max_labels=1)))
        async with stream(cfg) as rig:
            rig.inbox.send(
                metrics(1, labels={"a": "1", "b": "2"}),
                metrics(2, agent_id="someone-else"),
                pb.AgentMessage(
                    command_response=pb.CommandResponseMessage(command_id="c1", agent_id="web-2", status=pb.SUCCEEDED)
                ),
                pb.AgentMessage(command_response=pb.CommandResponseMessage(command_id="c2", stdout="x" * 2_000_000)),
                pb.AgentMessage(),
            )
            await until(lambda: len(rig.acks()) == 4, what="four refusals")
            assert [(a.success, a.retriable) for a in rig.acks()] == [(False, False)] * 4
            messages = [a.message for a in rig.acks()]
            assert messages[0] == "record exceeds limits: 2 labels (limit 1)"
            assert messages[1] == "agent_id 'someone-else' does not match stream"
            assert messages[2] == "agent_id does not match stream" and rig.acks()[2].command_id == "c1"
            assert messages[3].startswith("response exceeds limits: output larger than")
            assert rig.factory.producer.produced == [] and rig.stats.rejected == 4

    asyncio.run(scenario())


def test_command_responses_are_forwarded_and_heartbeats_noted() -> None:
    async def scenario() -> None:
        async with stream(auto=True) as rig:
            rig.inbox.send(
                pb.AgentMessage(heartbeat=pb.AgentHeartbeat(interval_seconds=2.0, spool_dropped=3)),
                pb.AgentMessage(
                    command_response=pb.CommandResponseMessage(command_id="c1", status=pb.SUCCEEDED, exit_code=0)
                ),
                pb.AgentMessage(heartbeat=pb.AgentHeartbeat(state=pb.AGENT_STATE_STOPPING)),
            )
            rig.inbox.close()
            await asyncio.wait_for(rig.task, WAIT)
            (ack,) = rig.acks()
            assert (ack.kind, ack.command_id, ack.command_status, ack.success) == (
                pb.ACK_KIND_COMMAND_RESPONSE,
                "c1",
                pb.SUCCEEDED,
                True,
            )
            (stored,) = rig.factory.producer.on("command-responses")
            assert isinstance(stored, pb.CommandResponseMessage)
            assert stored.agent_id == "web-1" and stored.reported_by == "agent"
            assert rig.stats.responses_by_status == {"SUCCEEDED": 1} and rig.stats.heartbeats == 2
            assert rig.stats.agent_drops == {"web-1": 3}
        assert [s.reason for s in rig.sink.presence()] == ["", "goodbye"]  # STOPPING made it a goodbye

    asyncio.run(scenario())


def test_a_final_status_kafka_already_has_is_acknowledged_not_written_again() -> None:
    async def scenario() -> None:
        async with stream(auto=True) as rig:
            for command_id, status in (("resent", pb.SUCCEEDED), ("expired", pb.EXPIRED)):
                known = pb.CommandResponseMessage(command_id=command_id, agent_id="web-1", status=status)
                rig.router.on_response(known, from_kafka=True)
            rig.inbox.send(
                *(
                    pb.AgentMessage(command_response=pb.CommandResponseMessage(command_id=c, status=s))
                    for c, s in (("resent", pb.SUCCEEDED), ("expired", pb.SUCCEEDED), ("new", pb.FAILED))
                )
            )
            rig.inbox.close()
            await asyncio.wait_for(rig.task, WAIT)
            assert [(a.command_id, a.success, a.message) for a in rig.acks()] == [
                ("resent", True, "already stored in Kafka"),
                ("expired", True, "already stored in Kafka"),  # too late: the command ended EXPIRED
                ("new", True, "stored in Kafka"),
            ]
            assert [r.command_id for r in rig.factory.producer.on("command-responses")] == ["new"]  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_response_to_another_agents_command_is_refused_with_its_status() -> None:
    async def scenario() -> None:
        async with stream(auto=True) as rig:
            command = pb.CommandMessage(command_id="theirs", agent_id="web-2", command="ping")
            rig.router.on_record(
                b"web-2", command.SerializeToString(), [("message-type", b"monitoring.v1.CommandMessage")]
            )
            rig.inbox.send(
                pb.AgentMessage(command_response=pb.CommandResponseMessage(command_id="theirs", status=pb.SUCCEEDED))
            )
            rig.inbox.close()
            await asyncio.wait_for(rig.task, WAIT)
            [ack] = rig.acks()
            assert (ack.success, ack.retriable, ack.command_status) == (False, False, pb.SUCCEEDED)
            assert "another agent's" in ack.message and rig.factory.producer.on("command-responses") == []
            assert rig.router.held == 1

    asyncio.run(scenario())


def test_the_in_flight_bound_stops_reading() -> None:
    async def scenario() -> None:
        cfg = MonitordConfig(server=ServerSection(server_id="s1", max_inflight_per_stream=2))
        async with stream(cfg) as rig:
            rig.inbox.send(*(metrics(n) for n in range(1, 6)))
            await until(lambda: rig.factory.producer.waiting == 2 and rig.inbox.taken == 3, what="two in flight")
            await asyncio.sleep(0.05)
            assert rig.inbox.taken == 3  # the third is read and waits for a slot; the rest stay unread
            assert len(rig.factory.producer.produced) == 2 and rig.sessions.inflight.in_use == 2
            rig.factory.producer.release(2)
            await until(lambda: rig.factory.producer.waiting == 2 and rig.inbox.taken == 5, what="reading resumed")
            rig.factory.producer.release(2)
            await until(lambda: rig.factory.producer.waiting == 1, what="the last record handed over")
            rig.factory.producer.release(1)
            await until(lambda: rig.ranges() != [] and rig.ranges()[-1][1] == 5, what="all acked")

    asyncio.run(scenario())


def test_records_unacknowledged_when_the_stream_dies_give_their_slots_back() -> None:
    async def scenario() -> None:
        async with stream() as rig:
            rig.inbox.send(metrics(1), metrics(2))
            await until(lambda: rig.factory.producer.waiting == 2, what="two records in flight")
            assert rig.sessions.inflight.in_use == 2
            session = rig.sessions.get("web-1")
            assert session is not None
            session.cancel("stale: silent for 31s")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(rig.task, WAIT)
            assert rig.sessions.inflight.in_use == 0 and rig.acks() == []
        assert [s.reason for s in rig.sink.presence()][-1] == "stale: silent for 31s"

    asyncio.run(scenario())

"""The polling design monitord's push design replaced, reduced to its essentials, as a baseline for
bench/command_latency.py.

    polling.py server --listen 127.0.0.1:PORT --bootstrap HOST:PORT
    polling.py agents --server 127.0.0.1:PORT --prefix P --count N [--interval 5]

The server consumes the Kafka ``commands`` topic (the same records, decoded with monitord.records)
and holds them per agent; nothing is pushed. Each agent asks every ``--interval`` seconds (its own
random phase) with ``Poll``, a server-streaming gRPC call that returns the agent's pending commands,
answers a ``ping`` at once and posts the final CommandResponseMessage with ``Respond``; the server
produces it to ``command-responses`` as monitord does (records.encode, idempotent, acks=all,
linger.ms=1) and returns once Kafka acknowledged it. Same transport (grpc.aio, plaintext, one
channel per agent), same Kafka client and settings as the real path: only push vs. poll differs.
No proto of its own: the methods carry monitoring.v1 messages (agent id as UTF-8 for Poll).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb

SERVICE = "bench.polling.Polling"
POLL = f"/{SERVICE}/Poll"
RESPOND = f"/{SERVICE}/Respond"


def _identity(b: bytes) -> bytes:
    return b


class PollingServer:
    def __init__(self, bootstrap: str, server_id: str) -> None:
        self.server_id = server_id
        self.pending: defaultdict[str, list[pb.CommandMessage]] = defaultdict(list)
        self.loop = asyncio.get_running_loop()
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "socket.nagle.disable": True,
            }
        )
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"polling-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,  # monitord's default commands.fetch_wait_max_ms
                "fetch.min.bytes": 1,
                "socket.nagle.disable": True,
            }
        )
        # Start at the current end, like monitord ("auto.offset.reset": "latest"), but assigned
        # synchronously so "assigned" is true when we print it.
        meta = self.consumer.list_topics("commands", timeout=10)
        parts = [TopicPartition("commands", p) for p in meta.topics["commands"].partitions]
        for tp in parts:
            tp.offset = self.consumer.get_watermark_offsets(tp, timeout=10)[1]
        self.consumer.assign(parts)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._consume, daemon=True),
            threading.Thread(target=self._poll_producer, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _consume(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(500, timeout=0.1):
                if msg.error():
                    continue
                try:
                    message = records.decode(msg.key(), msg.value(), msg.headers(), default_type=pb.CommandMessage)
                except records.RecordDecodeError:
                    continue
                if isinstance(message.message, pb.CommandMessage):
                    self.loop.call_soon_threadsafe(self._hold, message.message)
        self.consumer.close()

    def _hold(self, command: pb.CommandMessage) -> None:
        self.pending[command.agent_id].append(command)

    def _poll_producer(self) -> None:
        while not self.stop.is_set():
            self.producer.poll(0.05)
        self.producer.flush(10)

    async def poll(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for command in self.pending.pop(request.decode(), []):
            yield command.SerializeToString()

    async def respond(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        response = pb.CommandResponseMessage.FromString(request)
        done: asyncio.Future[KafkaError | None] = self.loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self.loop.call_soon_threadsafe(done.set_result, err)

        key, value, headers = records.encode(response, agent_id=response.agent_id, server_id=self.server_id)
        self.producer.produce("command-responses", key=key, value=value, headers=headers, on_delivery=delivered)
        err = await done
        if err is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        return b""


async def serve(listen: str, bootstrap: str) -> None:
    state = PollingServer(bootstrap, f"polling-{uuid.uuid4().hex[:6]}")
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Poll": grpc.unary_stream_rpc_method_handler(
                state.poll, request_deserializer=_identity, response_serializer=_identity
            ),
            "Respond": grpc.unary_unary_rpc_method_handler(
                state.respond, request_deserializer=_identity, response_serializer=_identity
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(listen)
    await server.start()
    print(f"polling-server: listening on {listen}, commands assigned", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(2)
    state.stop.set()
    for t in state.threads:
        t.join(15)


def ping_response(command: pb.CommandMessage, agent_id: str) -> pb.CommandResponseMessage:
    now = time.time()
    if command.command == "ping":
        status, stdout, message = pb.SUCCEEDED, "pong", ""
    else:
        status, stdout, message = pb.REJECTED, "", f"unknown command {command.command!r}"
    response = pb.CommandResponseMessage(
        command_id=command.command_id,
        agent_id=agent_id,
        command=command.command,
        status=status,
        stdout=stdout,
        message=message,
        requested_by=command.requested_by,
        reported_by="agent",
    )
    response.started_at.FromNanoseconds(int(now * 1e9))
    response.finished_at.FromNanoseconds(int(now * 1e9))
    return response


async def agent(server: str, agent_id: str, interval: float, first: asyncio.Event, polled: list[int]) -> None:
    async with grpc.aio.insecure_channel(server) as channel:
        poll = channel.unary_stream(
            POLL, request_serializer=_identity, response_deserializer=pb.CommandMessage.FromString
        )
        respond = channel.unary_unary(RESPOND, request_serializer=_identity, response_deserializer=_identity)
        start = time.monotonic() + random.uniform(0, interval)  # random phase
        tick = 0
        while True:
            await asyncio.sleep(max(0.0, start + tick * interval - time.monotonic()))
            tick += 1
            try:
                commands = [c async for c in poll(agent_id.encode(), timeout=interval)]
                for command in commands:
                    await respond(ping_response(command, agent_id).SerializeToString(), timeout=30)
            except grpc.aio.AioRpcError as exc:
                print(f"polling-agent {agent_id}: {exc.code().name} {exc.details()}", file=sys.stderr, flush=True)
                continue
            if not first.is_set():
                first.set()
                polled[0] += 1


async def run_agents(server: str, prefix: str, count: int, interval: float) -> None:
    polled = [0]
    firsts = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(agent(server, f"{prefix}-{i:04d}", interval, firsts[i], polled)) for i in range(count)]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await asyncio.gather(*(f.wait() for f in firsts))
    print(f"polling-agents: {polled[0]}/{count} polling every {interval:g}s", file=sys.stderr, flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--listen", required=True)
    s.add_argument("--bootstrap", required=True)
    a = sub.add_parser("agents")
    a.add_argument("--server", required=True)
    a.add_argument("--prefix", required=True)
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--interval", type=float, default=5.0)
    args = p.parse_args()
    if args.role == "server":
        asyncio.run(serve(args.listen, args.bootstrap))
    else:
        asyncio.run(run_agents(args.server, args.prefix, args.count, args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())

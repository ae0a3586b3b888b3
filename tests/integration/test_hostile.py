"""Hostile input, part 2: a rogue gRPC client and malicious `commands` records, each category run
while a well-behaved agent streams -- every one of its metrics must reach Kafka and monitord must
stay up. Each test prints how many cases it tried."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from confluent_kafka import Producer

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import (
    KafkaBroker,
    Proc,
    command_responses,
    produce_command,
    start_agent,
    start_monitord,
    statuses,
    stop_and_check_agent,
    unique,
)

pytestmark = pytest.mark.kafka

STREAM = "/monitoring.v1.MonitoringService/StreamCommunication"
REGISTER = "/monitoring.v1.MonitoringService/RegisterAgent"


@dataclass
class Arena:
    kafka: KafkaBroker
    server: Proc
    address: str
    agent_id: str
    agent: Proc
    channel: grpc.Channel
    rng: random.Random

    def raw_stream(self, messages: list[bytes], agent_id: str = "rogue", timeout: float = 5) -> grpc.StatusCode:
        """Send ``messages`` as raw bytes on one StreamCommunication call; the resulting status."""
        call = self.channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
        try:
            for _ in call(iter(messages), metadata=(("agent-id", agent_id),), timeout=timeout):
                pass
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]

    def alive(self) -> None:
        assert self.server.popen is not None and self.server.popen.poll() is None, self.server.text()[-3000:]


@pytest.fixture(scope="module")
def arena(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    tmp = tmp_path_factory.mktemp("hostile")
    server, address = start_monitord(
        tmp,
        kafka.bootstrap,
        reap=False,
        wait_commands=True,
        extra={
            "server": {
                "log_each_record": False,
                "max_message_bytes": 1024 * 1024,
                "limits": {"messages_per_second": 2000},
            }
        },
    )
    agent_id = unique("good")
    agent = start_agent(
        tmp,
        address,
        agent_id,
        iterations=0,  # streams until the module is done, then SIGTERM
        interval=0.25,
        reap=False,
        config={"connection": {"ack_timeout_seconds": 120}},
    )
    channel = grpc.insecure_channel(address)
    try:
        server.wait_agents(1)
        yield Arena(kafka, server, address, agent_id, agent, channel, random.Random(1234))
        # The well-behaved agent streamed while everything below happened: nothing it collected is lost.
        report = stop_and_check_agent("well-behaved agent during the hostile suite", agent, kafka.bootstrap, agent_id)
        assert report["lost"] == 0 and report["sent"] >= 20, report
        assert server.popen is not None and server.popen.poll() is None
    finally:
        channel.close()
        agent.stop()
        server.stop()


def run_cases(name: str, count: int, case: Callable[[int], None]) -> None:
    for i in range(count):
        case(i)
    print(f"hostile {name}: {count} cases")


def test_random_bytes(arena: Arena) -> None:
    codes: set[grpc.StatusCode] = set()
    run_cases(
        "random bytes as messages",
        200,
        lambda i: codes.add(arena.raw_stream([arena.rng.randbytes(arena.rng.randint(1, 300))])),
    )
    arena.alive()
    print("  statuses seen:", sorted(c.name for c in codes))


def valid_metrics(agent_id: str, seq: int) -> bytes:
    m = pb.MetricsData(agent_id=agent_id, sequence=seq, hostname="rogue")
    m.cpu.percent = 1.0
    m.disks.add(mountpoint="/", percent=1.0)
    return pb.AgentMessage(metrics_data=m).SerializeToString()


def test_truncated_and_corrupted_protobuf(arena: Arena) -> None:
    def case(i: int) -> None:
        data = bytearray(valid_metrics("rogue", i + 1))
        if i % 2:
            data = data[: arena.rng.randint(1, len(data) - 1)]
        else:
            for _ in range(3):
                data[arena.rng.randrange(len(data))] = arena.rng.randrange(256)
        arena.raw_stream([bytes(data)])

    run_cases("truncated/corrupted protobuf", 200, case)
    arena.alive()


def test_wrong_field_types(arena: Arena) -> None:
    def case(i: int) -> None:
        field = 1 + i % 3  # metrics_data / command_response / heartbeat, each sent as a varint
        arena.raw_stream([bytes([(field << 3) | 0]) + bytes([i % 128])])

    run_cases("wrong wire types", 100, case)
    arena.alive()


def test_huge_and_oversized_fields(arena: Arena) -> None:
    results: list[grpc.StatusCode] = []

    def case(i: int) -> None:
        m = pb.MetricsData(agent_id="rogue-big", sequence=i + 1)
        if i % 2:  # over max_message_bytes: refused by gRPC itself
            m.labels["x"] = "y" * (2 * 1024 * 1024)
        else:  # under the size limit but over the field bounds: a non-retriable negative ack
            for d in range(300):
                m.disks.add(mountpoint=f"/d{d}")
        results.append(arena.raw_stream([pb.AgentMessage(metrics_data=m).SerializeToString()], "rogue-big"))

    run_cases("huge repeated fields / oversized messages", 20, case)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in results
    arena.server.wait_for(r"record exceeds limits: more than 256 disks")
    arena.alive()


def test_out_of_order_and_duplicate_sequences(arena: Arena) -> None:
    seqs = [arena.rng.randint(1, 20) for _ in range(150)]
    status = arena.raw_stream([valid_metrics("rogue-order", s) for s in seqs], "rogue-order", timeout=30)
    print(f"hostile out-of-order/duplicate sequences: {len(seqs)} cases ({status.name})")
    arena.alive()


def test_register_and_stream_floods(arena: Arena) -> None:
    register = arena.channel.unary_unary(REGISTER, request_serializer=None, response_deserializer=None)
    futures = [
        register.future(pb.AgentRegistration(agent_id=f"flood-{i}").SerializeToString(), timeout=10) for i in range(200)
    ]
    for f in futures:
        with contextlib.suppress(grpc.RpcError):
            f.result()
    threads = [threading.Thread(target=arena.raw_stream, args=([], f"flood-{i}")) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    print("hostile register/stream floods: 300 cases")
    arena.alive()


def test_half_open_connections_and_streams_that_never_read(arena: Arena) -> None:
    host, port = arena.address.rsplit(":", 1)
    sockets = []
    for i in range(50):  # connect and say nothing, a bad preface, or half an HTTP/2 preface
        s = socket.create_connection((host, int(port)), timeout=5)
        if i % 3 == 1:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        elif i % 3 == 2:
            s.sendall(b"PRI * HTTP/2.0\r\n")
        sockets.append(s)
    # Streams that keep sending but never read a single ack.
    silent = [
        arena.channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)(
            iter([valid_metrics(f"deaf-{i}", n) for n in range(1, 51)]),
            metadata=(("agent-id", f"deaf-{i}"),),
            timeout=20,
        )
        for i in range(20)
    ]
    time.sleep(5)
    arena.alive()
    for s in sockets:
        s.close()
    for call in silent:
        call.cancel()
    print("hostile half-open connections and non-reading streams: 70 cases")


def test_malicious_command_records(arena: Arena) -> None:
    producer = Producer({"bootstrap.servers": arena.kafka.bootstrap})
    target = arena.agent_id
    records: list[tuple[bytes | None, bytes]] = [
        (target.encode(), b"{not json"),
        (target.encode(), b"\x00\xff\xfe garbage"),
        (None, json.dumps({"command": "ping"}).encode()),
        (target.encode(), json.dumps({"agentId": target, "command": "ping", "args": 5}).encode()),
        (target.encode(), json.dumps({"agentId": "someone-else", "command": "ping"}).encode()),
        (target.encode(), json.dumps({"agentId": target, "command": "ping", "args": ["x" * 10000]}).encode()),
        (target.encode(), json.dumps({"agentId": target, "command": "ping", "args": ["a"] * 500}).encode()),
    ]
    rng = arena.rng
    for _ in range(250):
        records.append((rng.choice([target, "ghost-agent", ""]).encode(), rng.randbytes(rng.randint(0, 200))))
    for i in range(50):  # injection attempts against a real template (never a shell)
        records.append(
            (
                target.encode(),
                json.dumps({"agentId": target, "command": "disk-usage", "args": [f"/tmp; rm -rf / #{i}"]}).encode(),
            )
        )
    for key, value in records:
        producer.produce("commands", key=key, value=value)
    assert producer.flush(30) == 0
    print(f"hostile commands-topic records: {len(records)} cases")
    # The consumer survived all of that: a real command still round-trips.
    command_id = produce_command(arena.kafka.bootstrap, target, "ping")
    assert statuses(command_responses(arena.kafka.bootstrap, target, command_id, timeout=60)) == [
        "DELIVERED",
        "SUCCEEDED",
    ]
    arena.server.wait_for(r"Invalid command record")
    arena.alive()

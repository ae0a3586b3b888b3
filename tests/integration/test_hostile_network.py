"""Hostile input from the network, token mode: peers without credentials, an authenticated agent
that misbehaves, malformed frames and connections that never authenticate. Everything is refused
with a status naming what is wrong, costs a bounded number of log lines and little memory, and a
good agent streaming meanwhile loses nothing. Each class prints how many cases it tried."""

from __future__ import annotations

import hashlib
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import (
    KafkaBroker,
    Monitord,
    rss_kib,
    start_agent,
    start_monitord,
    stop_and_check_agent,
    unique,
    write_yaml,
)
from monitoring_testsupport.pki import agent_tls, localhost, make_pki, server_tls

pytestmark = pytest.mark.kafka

STREAM = "/monitoring.v1.MonitoringService/StreamCommunication"
REGISTER = "/monitoring.v1.MonitoringService/RegisterAgent"
MIB = 1024 * 1024
#: What the arena's monitord allows (small, so the bounds are reached within the test).
MAX_CONNECTIONS = 40
HANDSHAKE_SECONDS = 2.0
IDLE_SECONDS = 3.0


@dataclass
class Arena:
    server: Monitord
    address: str
    channel: grpc.Channel  # TLS, no credentials of its own
    rogue_token: str  # a valid token of agent "rogue": an authenticated agent that misbehaves
    ca: bytes
    counts: Counter[str]
    details: list[str]  # the status message of every refused RegisterAgent, in order

    def codes(self, name: str, count: int, call: Callable[[int], grpc.StatusCode]) -> Counter[grpc.StatusCode]:
        seen = Counter(call(i) for i in range(count))
        self.counts[name] += count
        print(f"hostile {name}: {count} cases, statuses {dict((c.name, n) for c, n in seen.items())}")
        return seen

    def register(self, request: pb.AgentRegistration | bytes, token: str = "") -> grpc.StatusCode:
        raw = request if isinstance(request, bytes) else request.SerializeToString()
        call = self.channel.unary_unary(REGISTER, request_serializer=None, response_deserializer=None)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            call(raw, metadata=metadata, timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.details.append(exc.details() or "")
            return exc.code()  # type: ignore[no-any-return]

    def stream(self, messages: list[bytes], agent_id: str = "rogue") -> tuple[grpc.StatusCode, list[pb.ServerMessage]]:
        """``messages`` as raw bytes on one authenticated stream of ``agent_id``: its status and replies."""
        call = self.channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
        metadata = (("agent-id", agent_id), ("authorization", f"Bearer {self.rogue_token}"))
        replies: list[pb.ServerMessage] = []
        try:
            for raw in call(iter(messages), metadata=metadata, timeout=20):
                replies.append(pb.ServerMessage.FromString(raw))
            return grpc.StatusCode.OK, replies
        except grpc.RpcError as exc:
            return exc.code(), replies

    def alive(self) -> None:
        assert self.server.running(), self.server.text()[-3000:]


@pytest.fixture(scope="module")
def arena(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    tmp = tmp_path_factory.mktemp("hostile-network")
    pki = make_pki(tmp / "pki")
    good_id = unique("good")
    tokens = write_yaml(
        tmp / "tokens.yaml",
        {
            good_id: "sha256:" + hashlib.sha256(b"good-secret").hexdigest(),
            "rogue": "sha256:" + hashlib.sha256(b"rogue-secret").hexdigest(),
        },
    )
    tokens.chmod(0o600)
    extra = server_tls(pki, "tls", tokens_file=str(tokens))
    extra["server"].update(
        log_each_record=False,
        limits={
            "max_connections": MAX_CONNECTIONS,
            "handshake_timeout_seconds": HANDSHAKE_SECONDS,
            "idle_connection_seconds": IDLE_SECONDS,
        },
    )
    server, address = start_monitord(tmp, kafka.bootstrap, extra=extra, reap=False)
    (tmp / "good.token").write_text("good-secret\n")
    good = start_agent(
        tmp,
        localhost(address),
        good_id,
        iterations=0,  # streams until the module is done, then SIGTERM
        interval=0.25,
        reap=False,
        config=agent_tls(pki, "tls", token_file=str(tmp / "good.token")),
    )
    ca = (pki / "ca.crt").read_bytes()
    channel = grpc.secure_channel(localhost(address), grpc.ssl_channel_credentials(ca))
    counts: Counter[str] = Counter()
    try:
        server.wait_agents(1)
        time.sleep(2)  # settled: the idle figure is a serving monitord's
        idle, log_before = rss_kib(server.pid), server.log_path.stat().st_size
        yield Arena(server, address, channel, "rogue-secret", ca, counts, [])
        # The good agent streamed through all of it: nothing lost, monitord alive and small.
        report = stop_and_check_agent("good agent during the network attacks", good, kafka.bootstrap, good_id)
        assert report["lost"] == 0 and report["sent"] >= 20, report
        peak, log_bytes = rss_kib(server.pid, "VmHWM"), server.log_path.stat().st_size - log_before
        total = sum(counts.values())
        print(
            f"hostile network: {total} cases in {len(counts)} classes; monitord RSS idle {idle} KiB, "
            f"peak {peak} KiB ({peak / idle:.2f}x); log grew {log_bytes} B"
        )
        assert peak <= 2 * idle, (idle, peak)
        assert log_bytes < 256 * 1024, log_bytes
        text = server.text()
        assert "Traceback" not in text and "\x1b" not in text and "x" * 2000 not in text
    finally:
        channel.close()
        good.stop()
        server.stop()


def test_unauthenticated_registrations_with_huge_or_invalid_ids(arena: Arena) -> None:
    rng = random.Random(3)
    bad_ids = ["x" * MIB, "\x1b[31mred\n", "", "-starts-with-dash", "a" * 129, "ünïcode", "a b", "a/b"]
    seen = arena.codes(
        "unauthenticated RegisterAgent, invalid ids (1 MiB, escapes, empty, too long)",
        200,
        lambda i: arena.register(pb.AgentRegistration(agent_id=bad_ids[i % len(bad_ids)], hostname=str(rng.random()))),
    )
    assert set(seen) == {grpc.StatusCode.INVALID_ARGUMENT}
    seen = arena.codes(
        "unauthenticated RegisterAgent, valid ids without a token",
        100,
        lambda i: arena.register(pb.AgentRegistration(agent_id=f"nobody-{i}", hostname="h" * 1000)),
    )
    assert grpc.StatusCode.OK not in seen
    arena.alive()


def test_authenticated_agent_with_oversized_registration_fields(arena: Arena) -> None:
    cases = [
        pb.AgentRegistration(agent_id="rogue", hostname="h" * (3 * MIB)),
        pb.AgentRegistration(agent_id="rogue", agent_version="v" * 2000),
        pb.AgentRegistration(agent_id="rogue", instance_id="i" * 2000),
        pb.AgentRegistration(agent_id="rogue", capabilities=[f"c{n}" for n in range(1000)]),
        pb.AgentRegistration(agent_id="rogue", capabilities=["c" * 10_000]),
        pb.AgentRegistration(agent_id="rogue", interval_seconds=math.nan),
        pb.AgentRegistration(agent_id="rogue", interval_seconds=-1),
        pb.AgentRegistration(agent_id="rogue", interval_seconds=1e12),
    ]
    seen = arena.codes(
        "authenticated RegisterAgent, fields over their bounds",
        len(cases),
        lambda i: arena.register(cases[i], arena.rogue_token),
    )
    assert seen == Counter({grpc.StatusCode.INVALID_ARGUMENT: len(cases)})
    assert arena.details[-len(cases)] == "registration refused: hostname longer than 1024 bytes"
    assert "capabilities" in arena.details[-5] and "interval_seconds" in arena.details[-1]
    arena.alive()


def test_authenticated_agent_registering_in_a_loop_is_slowed(arena: Arena) -> None:
    seen = arena.codes(
        "authenticated RegisterAgent flood (one agent id)",
        100,
        lambda i: arena.register(pb.AgentRegistration(agent_id="rogue", hostname="rogue"), arena.rogue_token),
    )
    assert seen[grpc.StatusCode.OK] <= 12 and seen[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 88
    arena.alive()


def metrics(agent_id: str, sequence: int) -> bytes:
    return pb.AgentMessage(metrics_data=pb.MetricsData(agent_id=agent_id, sequence=sequence)).SerializeToString()


def test_authenticated_stream_with_huge_mismatched_agent_ids(arena: Arena) -> None:
    status, replies = arena.stream([metrics("x" * MIB + str(n), n + 1) for n in range(50)])
    arena.counts["authenticated MetricsData, 1 MiB mismatched agent_id"] += 50
    print(f"hostile authenticated MetricsData, 1 MiB mismatched agent_id: 50 cases ({status.name})")
    acks = [r.acknowledgment for r in replies if r.HasField("acknowledgment")]
    assert len(acks) == 50 and not any(a.success or a.retriable for a in acks)
    assert max(len(a.message) for a in acks) < 300  # the refusal quotes the id escaped and cut
    arena.alive()


def test_malformed_frames_are_invalid_argument(arena: Arena) -> None:
    rng = random.Random(5)
    garbage = [rng.randbytes(rng.randint(1, 200)) for _ in range(100)]
    garbage = [g for g in garbage if not _parses(g)]  # (most random bytes are no message of either type)
    seen = arena.codes(
        "malformed RegisterAgent frames", len(garbage), lambda i: arena.register(garbage[i], arena.rogue_token)
    )
    assert set(seen) == {grpc.StatusCode.INVALID_ARGUMENT}
    seen = arena.codes(
        "malformed stream frames", len(garbage), lambda i: arena.stream([metrics("rogue", 1), garbage[i]])[0]
    )
    assert set(seen) == {grpc.StatusCode.INVALID_ARGUMENT}
    arena.alive()


def _parses(raw: bytes) -> bool:
    """Whether ``raw`` is an AgentMessage or an AgentRegistration after all."""
    for message_type in (pb.AgentMessage, pb.AgentRegistration):
        try:
            message_type.FromString(raw)
            return True
        except Exception:
            pass
    return False


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (bytes it sends first are read)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def test_connections_that_never_authenticate_are_bounded_and_closed(arena: Arena) -> None:
    host, port = arena.address.rsplit(":", 1)
    # More raw TCP connections than the server holds, saying nothing or half a TLS hello.
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(MAX_CONNECTIONS + 20)]
    for n, s in enumerate(sockets):
        if n % 2:
            s.sendall(b"\x16\x03\x01\x00")
    arena.counts["silent or half-handshake TCP connections"] += len(sockets)
    closed = sum(closed_within(s, HANDSHAKE_SECONDS + 8) for s in sockets)
    print(f"hostile silent or half-handshake TCP connections: {len(sockets)} cases, {closed} closed by the server")
    for s in sockets:
        s.close()
    assert closed == len(sockets)  # over the bound at once, the others when their handshake time ran out
    # TLS + HTTP/2 connections that make no call: closed once idle.
    own = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [
        grpc.secure_channel(localhost(arena.address), grpc.ssl_channel_credentials(arena.ca), options=own)
        for _ in range(10)
    ]
    states: list[list[grpc.ChannelConnectivity]] = [[] for _ in channels]
    for channel, seen in zip(channels, states, strict=True):
        grpc.channel_ready_future(channel).result(timeout=10)
        channel.subscribe(seen.append)
    deadline = time.monotonic() + IDLE_SECONDS + 15
    while time.monotonic() < deadline and not all(grpc.ChannelConnectivity.IDLE in seen for seen in states):
        time.sleep(0.2)
    arena.counts["connected TLS channels without a call"] += len(channels)
    print(f"hostile connected TLS channels without a call: {len(channels)} cases")
    for channel in channels:
        channel.close()
    assert all(grpc.ChannelConnectivity.IDLE in seen for seen in states), "idle connections were not closed"
    arena.alive()

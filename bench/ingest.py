"""M1 ingest: metrics records per second through one monitord into Kafka (acks=all) with acks back
to the agents, side by side with two ceilings measured in the same run:

* (a) gRPC ceiling: a bare grpc.aio bidirectional echo server that parses each AgentMessage and
  answers an Ack at once (no Kafka), fed by the same load generator;
* (b) Kafka ceiling: a produce-only confluent-kafka loop (idempotent, acks=all, same record size).

    .venv/bin/python bench/ingest.py --agents 50 --seconds 20

The load generator runs in its own process: N simulated agents, one gRPC channel each (local
subchannel pools), spread over several 127.0.0.x source addresses, each keeping up to --window
records in flight. It reports its own CPU so the reader can tell who was the bottleneck. Prints one
JSON line per measurement (used by bench/run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_testsupport import bench_broker, free_port, start_monitord

REPO = Path(__file__).resolve().parents[1]


def sample_record(agent_id: str, real: bool = False) -> pb.MetricsData:
    """The mock collector's record (small), or one real psutil record of this machine."""
    from monitor_agentd.collectors import make_collector
    from monitor_agentd.config import CollectionSection

    mode = "real" if real else "mock"
    m = pb.MetricsData(agent_id=agent_id, sequence=1, hostname=agent_id, source=mode)
    m.collected_at.GetCurrentTime()
    make_collector(CollectionSection(mode=mode), agent_id).collect(m, 1)
    return m


class Shape(NamedTuple):
    """What each simulated agent sends and how."""

    rate: float = 0.0  # records/s per agent; 0 = as fast as the window allows
    compression: str = "none"
    real_record: bool = False


# -- load generator (separate process) ------------------------------------------------------------


async def one_agent(
    address: str,
    agent_id: str,
    seconds: float,
    window: int,
    latencies: list[float],
    ack_messages: list[int],
    shape: Shape,
) -> int:
    """Stream for ``seconds``: as fast as ``window`` allows, or paced at ``shape.rate`` records/s."""
    rate = shape.rate
    compression = grpc.Compression.Gzip if shape.compression == "gzip" else grpc.Compression.NoCompression
    # A channel of its own per agent (no shared subchannel), like real hosts.
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.use_local_subchannel_pool", 1)], compression=compression
    ) as channel:
        stub = pb_grpc.MonitoringServiceStub(channel)
        await stub.RegisterAgent(pb.AgentRegistration(agent_id=agent_id, hostname=agent_id), wait_for_ready=True)
        call = stub.StreamCommunication(metadata=(("agent-id", agent_id),))
        record = sample_record(agent_id, shape.real_record)
        sent: dict[int, float] = {}
        credit = asyncio.Semaphore(window)
        end = time.monotonic() + seconds
        acked = 0

        async def reader() -> None:
            nonlocal acked
            async for msg in call:
                ack_messages[0] += 1
                if msg.WhichOneof("message") == "acknowledgment" and msg.acknowledgment.success:
                    for seq in range(msg.acknowledgment.first_sequence, msg.acknowledgment.last_sequence + 1):
                        t = sent.pop(seq, None)
                        if t is not None:
                            acked += 1
                            if seq % 10 == 0:
                                latencies.append(time.monotonic() - t)
                            credit.release()

        task = asyncio.create_task(reader())
        seq = 0
        due = time.monotonic()
        while time.monotonic() < end:
            if rate > 0:
                due += 1 / rate
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
            await credit.acquire()
            seq += 1
            record.sequence = seq
            sent[seq] = time.monotonic()
            await call.write(pb.AgentMessage(metrics_data=record))
        while sent and time.monotonic() < end + 10:
            await asyncio.sleep(0.05)
        await call.done_writing()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, grpc.aio.AioRpcError):
            task.cancel()
        return acked


async def generate(
    address: str, agents: int, seconds: float, window: int, prefix: str, shape: Shape, spread: bool = True
) -> dict[str, Any]:
    latencies: list[float] = []
    ack_messages = [0]
    start = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    port = address.rsplit(":", 1)[1]
    per_agent = shape._replace(rate=shape.rate / agents)
    # The server listens on all of 127/8: agents spread over 127.0.0.1-4 (more 4-tuples for many streams).
    counts = await asyncio.gather(
        *(
            one_agent(
                f"127.0.0.{1 + i % 4}:{port}" if spread else address,
                f"{prefix}-{i:05d}",
                seconds,
                window,
                latencies,
                ack_messages,
                per_agent,
            )
            for i in range(agents)
        )
    )
    elapsed = time.monotonic() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    latencies.sort()

    def p(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "acked": sum(counts),
        "records_per_ack": sum(counts) / max(1, ack_messages[0]),
        "seconds": elapsed,
        "rate": sum(counts) / seconds,
        "generator_cpu": cpu / elapsed,
        "p50_ms": p(0.5),
        "p99_ms": p(0.99),
    }


# -- baselines ---------------------------------------------------------------------------------------


class EchoService(pb_grpc.MonitoringServiceServicer):
    """The gRPC ceiling: parse each message, answer an Ack at once."""

    async def RegisterAgent(self, request: pb.AgentRegistration, context: Any) -> pb.Ack:  # noqa: N802
        return pb.Ack(kind=pb.ACK_KIND_REGISTRATION, success=True)

    async def StreamCommunication(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        async for msg in request_iterator:
            if msg.WhichOneof("message") == "metrics_data":
                seq = msg.metrics_data.sequence
                yield pb.ServerMessage(
                    acknowledgment=pb.Ack(kind=pb.ACK_KIND_METRICS, success=True, first_sequence=seq, last_sequence=seq)
                )


async def echo_server(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_MonitoringServiceServicer_to_server(EchoService(), server)
    server.add_insecure_port(f"0.0.0.0:{port}")
    await server.start()
    print("echo ready", flush=True)
    await server.wait_for_termination()


def produce_only(bootstrap: str, seconds: float) -> dict[str, Any]:
    from confluent_kafka import Producer

    from monitord import records

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "zstd",  # monitord's default
            "queue.buffering.max.messages": 200000,
        }
    )
    key, value, headers = records.encode(sample_record("produce-only"), agent_id="produce-only", server_id="bench")
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1

    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            producer.produce("monitoring-data", value=value, key=key, headers=list(headers), on_delivery=on_delivery)  # type: ignore[arg-type]
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    producer.flush(30)
    return {"acked": delivered, "rate": delivered / (time.monotonic() - start)}


# -- orchestration -------------------------------------------------------------------------------------


def run_generator(
    address: str, args: argparse.Namespace, prefix: str, rate: float = 0.0, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The load generator in its own process; ``extra``: --compression, --real-record, --no-spread."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--generate",
            address,
            "--agents",
            str(args.agents),
            "--seconds",
            str(args.seconds),
            "--window",
            str(args.window),
            "--prefix",
            prefix,
            "--rate",
            str(rate),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=args.seconds + 300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_ceilings(bootstrap: str, args: argparse.Namespace, results: dict[str, Any]) -> None:
    port = free_port()
    echo = subprocess.Popen([sys.executable, __file__, "--echo", str(port)], stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None and "echo ready" in echo.stdout.readline()
    cpu0 = process_cpu(echo.pid)
    results["grpc_echo"] = run_generator(f"127.0.0.1:{port}", args, "echo")
    results["grpc_echo"]["server_cpu"] = (process_cpu(echo.pid) - cpu0) / results["grpc_echo"]["seconds"]
    echo.terminate()
    echo.wait(10)
    results["kafka_produce_only"] = produce_only(bootstrap, args.seconds)


def measure_monitord(
    tmp: Path, bootstrap: str, args: argparse.Namespace, rate: float = 0.0, profile: str | None = None
) -> dict[str, Any]:
    port = free_port()
    server, address = start_monitord(
        tmp,
        bootstrap,
        name=f"bench-ingest-{port}",
        port=port,
        extra={
            "server": {
                "listen": f"0.0.0.0:{port}",
                "log_each_record": False,
                "limits": {"messages_per_second": 1_000_000},
            },
        },
    )
    assert server.popen is not None
    spy = None
    if profile:
        spy_args = [
            "--gil",
            "--format",
            "raw",
            "--rate",
            "200",
            "--duration",
            str(int(args.seconds)),
            "--output",
            profile,
        ]
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", *spy_args, "--pid", str(server.popen.pid)],
            stdout=subprocess.DEVNULL,
        )
    cpu0 = process_cpu(server.popen.pid)
    result = run_generator(address, args, f"ingest-{uuid.uuid4().hex[:6]}", rate)
    result["server_cpu"] = (process_cpu(server.popen.pid) - cpu0) / result["seconds"]
    if spy is not None:
        spy.wait(60)
    server.stop()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--window", type=int, default=64, help="records in flight per simulated agent")
    p.add_argument("--generate", metavar="ADDRESS", help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--compression", choices=("none", "gzip"), default="none", help=argparse.SUPPRESS)
    p.add_argument("--real-record", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-spread", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="ingest", help=argparse.SUPPRESS)
    p.add_argument("--profile", metavar="FILE", help="record monitord with py-spy (collapsed stacks) into FILE")
    p.add_argument("--only-monitord", action="store_true", help="skip the ceilings and the 70 %% run (profiling)")
    args = p.parse_args()
    if args.generate:
        shape = Shape(args.rate, args.compression, args.real_record)
        result = asyncio.run(
            generate(args.generate, args.agents, args.seconds, args.window, args.prefix, shape, not args.no_spread)
        )
        print(json.dumps(result))
        return 0
    if args.echo:
        asyncio.run(echo_server(args.echo))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker, own_broker = bench_broker(tmp)
    results: dict[str, Any] = {"agents": args.agents, "window": args.window, "seconds": args.seconds}
    try:
        if not args.only_monitord:
            measure_ceilings(broker.bootstrap, args, results)
        results["monitord"] = measure_monitord(tmp, broker.bootstrap, args, profile=args.profile)
        if args.only_monitord:
            print(json.dumps(results))
            return 0
        # Latency at 70 % of the throughput just measured: paced senders, not a full window each.
        results["monitord_70"] = measure_monitord(tmp, broker.bootstrap, args, rate=0.7 * results["monitord"]["rate"])
    finally:
        if own_broker:
            broker.stop()
    ceiling = min(results["grpc_echo"]["rate"], results["kafka_produce_only"]["rate"])
    results["ratio_to_lower_ceiling"] = results["monitord"]["rate"] / ceiling
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

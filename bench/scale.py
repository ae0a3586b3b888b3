"""M2 scale: concurrent agent streams held by one monitord (metrics and heartbeats every 10 s),
the server's RSS per stream, and command round-trip latency at that load.

    .venv/bin/python bench/scale.py --agents 10000 --fleets 4
    .venv/bin/python bench/scale.py --agents 2000 --real-agents   # monitoring_testsupport.fleet's real Agent objects

By default the agents are light simulated ones (this file's --generate mode): one gRPC channel each
with the real agent's keepalive options, RegisterAgent, then one stream carrying a mock metrics
record and a heartbeat every 10 s (random phase), reading acks and answering ``ping`` commands
with SUCCEEDED. The server sees exactly what it sees from real agents; the generator does not pay
for spool files and collectors, which on 2 shared cores would otherwise starve the server being
measured. Generators connect at most --ramp streams at a time each and retry refused registrations.
monitord listens on all of 127/8 and each generator dials another 127.0.0.x, so 10,000 streams do
not exhaust one source/destination pair's ports. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from command_latency import ResponseWatcher, command, command_headers, pct  # type: ignore[import-not-found]
from confluent_kafka import Producer
from ingest import process_cpu  # type: ignore[import-not-found]

from monitor_agentd.config import ConnectionSection
from monitor_agentd.stream import channel_options
from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_common.notify import Notifier
from monitoring_testsupport import Proc, bench_broker, free_port, start_fleet, start_monitord

# The real agent's channel options (keepalive agreed with monitord), one subchannel per agent.
AGENT_CHANNEL_OPTIONS = [*channel_options(ConnectionSection()), ("grpc.use_local_subchannel_pool", 1)]


# -- light simulated agents (separate processes) ----------------------------------------------------


class LightAgent:
    def __init__(self, address: str, agent_id: str, interval: float) -> None:
        self.address, self.agent_id, self.interval = address, agent_id, interval
        self.connected = False
        self.acked = 0
        self._writing = asyncio.Lock()  # one write at a time (commands are answered from the reader)

    async def _write(self, call: Any, message: pb.AgentMessage) -> None:
        async with self._writing:
            await call.write(message)

    async def run(self, ramp: asyncio.Semaphore, stop: asyncio.Event) -> None:
        from monitor_agentd.collectors.mock import MockCollector

        collector = MockCollector(self.agent_id)
        async with grpc.aio.insecure_channel(self.address, options=AGENT_CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.MonitoringServiceStub(channel)
            async with ramp:
                for attempt in range(20):
                    try:
                        await stub.RegisterAgent(
                            pb.AgentRegistration(agent_id=self.agent_id, hostname=self.agent_id, interval_seconds=10),
                            timeout=30,
                        )
                        break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(min(30, 2**attempt) * random.random())
                call = stub.StreamCommunication(metadata=(("agent-id", self.agent_id),))
                await call.wait_for_connection()
            self.connected = True
            reader = asyncio.create_task(self._read(call))
            sequence = 0
            await asyncio.sleep(random.uniform(0, self.interval))
            while not stop.is_set():
                sequence += 1
                m = pb.MetricsData(agent_id=self.agent_id, sequence=sequence, hostname=self.agent_id, source="mock")
                m.collected_at.GetCurrentTime()
                collector.collect(m, sequence)
                await self._write(call, pb.AgentMessage(metrics_data=m))
                hb = pb.AgentHeartbeat(agent_id=self.agent_id, last_sequence=sequence, interval_seconds=self.interval)
                hb.sent_at.GetCurrentTime()
                await self._write(call, pb.AgentMessage(heartbeat=hb))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
            await call.done_writing()
            reader.cancel()

    async def _read(self, call: Any) -> None:
        async for msg in call:
            kind = msg.WhichOneof("message")
            if kind == "acknowledgment":
                self.acked += 1
            elif kind == "command":
                cmd = msg.command
                response = pb.CommandResponseMessage(
                    command_id=cmd.command_id,
                    agent_id=self.agent_id,
                    command=cmd.command,
                    status=pb.SUCCEEDED,
                    stdout="pong",
                    requested_by=cmd.requested_by,
                )
                await self._write(call, pb.AgentMessage(command_response=response))


async def generate(address: str, prefix: str, count: int, ramp: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agents = [LightAgent(address, f"{prefix}-{i:04d}", 10.0) for i in range(count)]
    gate = asyncio.Semaphore(ramp)
    tasks = [asyncio.create_task(a.run(gate, stop)) for a in agents]
    announced = False
    while not stop.is_set():
        connected = sum(a.connected for a in agents)
        if connected == count and not announced:
            line = f"fleet: {connected}/{count} connected"
            Notifier().ready(line)
            print(line, file=sys.stderr, flush=True)
            announced = True
        await asyncio.sleep(0.5)
    await asyncio.wait(tasks, timeout=30)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_seconds": usage.ru_utime + usage.ru_stime, "acked": sum(a.acked for a in agents)}))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_fd_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_light_fleet(tmp: Path, address: str, prefix: str, count: int, ramp: int) -> Proc:
    argv = [sys.executable, __file__, "--generate", address, "--prefix", prefix, "--agents", str(count)]
    return Proc(f"light fleet {prefix}", [*argv, "--ramp", str(ramp)], tmp / f"fleet-{prefix}.log").start()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--fleets", type=int, default=4)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--ramp", type=int, default=100, help="streams each generator opens at a time")
    p.add_argument(
        "--real-agents", action="store_true", help="monitoring_testsupport.fleet (real Agent objects) instead"
    )
    p.add_argument("--generate", metavar="ADDRESS", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.generate:
        raise_fd_limit()
        asyncio.run(generate(args.generate, args.prefix, args.agents, args.ramp))
        return 0
    # Children (monitord, generators) inherit it: 10,000 streams are 10,000 sockets on each side.
    raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    broker, own_broker = bench_broker(tmp)
    try:
        port = free_port()
        server, _ = start_monitord(
            tmp,
            broker.bootstrap,
            port=port,
            wait_commands=True,
            extra={"server": {"listen": f"0.0.0.0:{port}", "log_each_record": False}},
        )
        assert server.popen is not None
        time.sleep(2)
        base = rss_kib(server.popen.pid)
        per_fleet = args.agents // args.fleets
        prefixes = [f"scale{i}-{uuid.uuid4().hex[:4]}" for i in range(args.fleets)]
        fleets = [
            start_fleet(tmp, f"127.0.0.{1 + i}:{port}", prefixes[i], per_fleet, iterations=0, interval=10)
            if args.real_agents
            else start_light_fleet(tmp, f"127.0.0.{1 + i}:{port}", prefixes[i], per_fleet, args.ramp)
            for i in range(args.fleets)
        ]
        started = time.monotonic()
        for fleet in fleets:
            fleet.wait_status(rf"fleet: {per_fleet}/{per_fleet} connected", timeout=1200)
        connect_seconds = time.monotonic() - started
        time.sleep(5)
        # At least one metrics + heartbeat round from everyone; CPU of each side over that window.
        pids = [f.popen.pid for f in fleets if f.popen is not None]
        s0, g0, t0 = process_cpu(server.popen.pid), sum(map(process_cpu, pids)), time.monotonic()
        time.sleep(20)
        elapsed = time.monotonic() - t0
        server_cpu = (process_cpu(server.popen.pid) - s0) / elapsed
        generator_cpu = (sum(map(process_cpu, pids)) - g0) / elapsed
        rss = rss_kib(server.popen.pid)
        watcher = ResponseWatcher(broker.bootstrap)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        latencies = []
        for i in range(args.samples):
            agent_id = f"{prefixes[i % args.fleets]}-{(i * 7919) % per_fleet:04d}"
            command_id, value = command(agent_id)
            sent = time.monotonic()
            producer.produce(
                "commands",
                key=agent_id.encode(),
                value=value,
                headers=command_headers(),
            )
            producer.flush(10)
            if watcher.wait({command_id}, timeout=10):
                latencies.append((watcher.finals[command_id] - sent) * 1000)
        watcher.close()
        total = per_fleet * args.fleets
        result = {
            "agents": total,
            "connect_seconds": connect_seconds,
            "server_rss_mib": rss / 1024,
            "server_rss_base_mib": base / 1024,
            "kib_per_stream": (rss - base) / total,
            "server_cpu_steady": server_cpu,
            "generator_cpu_steady": generator_cpu,
            "generator": "real Agent objects (monitoring_testsupport.fleet)"
            if args.real_agents
            else "light simulated agents",
            "command_p50_ms": pct(latencies, 0.5),
            "command_p99_ms": pct(latencies, 0.99),
            "command_samples": len(latencies),
        }
        for fleet in fleets:
            fleet.stop(120)
        server.stop(60)
        print(json.dumps(result))
    finally:
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compression: bytes on the wire and CPU, side by side in one run.

    .venv/bin/python bench/compression.py --agents 20 --rate 2000 --seconds 10

* Agent stream: the same paced load (``--rate`` records/s of a real psutil record of this machine,
  from ``--agents`` simulated agents) sent to one monitord without and with gzip. A counting TCP
  relay between the agents and monitord measures the bytes agents sent; the CPU of monitord and
  of the load generator is read from /proc. The ratio rows are gzip / none.
* Kafka producer: the same record produced ``--records`` times with each codec (idempotent,
  acks=all, monitord's linger); librdkafka's own statistics give the bytes sent to the broker,
  the process CPU time the cost. The records vary like consecutive samples of 100 hosts.

Prints one JSON line and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from ingest import process_cpu, run_generator, sample_record  # type: ignore[import-not-found]
from report import replace_section  # type: ignore[import-not-found]

from monitord import records
from monitoring_testsupport import bench_broker, free_port, start_monitord


class CountingRelay(threading.Thread):
    """127.0.0.1:port -> target, counting the bytes clients send (an asyncio loop in a thread)."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.port = free_port()
        self.upstream = 0
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.ready.set()
        async with server:
            await server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.upstream += len(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


def stream_run(tmp: Path, bootstrap: str, args: argparse.Namespace, compression: str) -> dict[str, Any]:
    server, address = start_monitord(
        tmp,
        bootstrap,
        name=f"compression-{compression}",
        extra={"server": {"log_each_record": False, "limits": {"messages_per_second": 1_000_000}}},
    )
    relay = CountingRelay(address)
    relay.start()
    relay.ready.wait(10)
    assert server.popen is not None
    cpu0 = process_cpu(server.popen.pid)
    extra = ("--compression", compression, "--real-record", "--no-spread")
    result = run_generator(f"127.0.0.1:{relay.port}", args, f"gz-{compression}", args.rate, extra)
    server_cpu = process_cpu(server.popen.pid) - cpu0
    server.stop()
    return {
        "records": result["acked"],
        "bytes_per_record": relay.upstream / max(1, result["acked"]),
        "server_cpu_us_per_record": 1e6 * server_cpu / max(1, result["acked"]),
        "agent_cpu_us_per_record": 1e6 * result["generator_cpu"] * result["seconds"] / max(1, result["acked"]),
    }


def varied_records(n: int) -> list[Any]:
    """``n`` records like consecutive samples of 100 hosts: the real record of this machine with
    agent id, sequence, time, percentages, memory and every counter moving (identical copies would
    compress unrealistically well)."""
    rng = random.Random(7)
    base = sample_record("codec", real=True)
    out = []
    for i in range(n):
        m = type(base)()
        m.CopyFrom(base)
        m.agent_id = m.hostname = f"host-{i % 100:03d}.example.net"
        m.sequence = 1 + i // 100
        m.collected_at.FromSeconds(1_790_000_000 + 10 * (i // 100))
        m.cpu.percent = rng.uniform(0, 100)
        m.cpu.per_core_percent[:] = [rng.uniform(0, 100) for _ in m.cpu.per_core_percent]
        m.cpu.load_1m, m.cpu.load_5m, m.cpu.load_15m = (rng.uniform(0, 8) for _ in range(3))
        m.memory.used_bytes = rng.randrange(m.memory.total_bytes or 2**34)
        m.memory.available_bytes = m.memory.free_bytes = (m.memory.total_bytes or 2**34) - m.memory.used_bytes
        m.memory.percent = rng.uniform(0, 100)
        for d in m.disks:
            d.used_bytes = rng.randrange(d.total_bytes or 2**40)
            d.free_bytes = (d.total_bytes or 2**40) - d.used_bytes
            d.percent = rng.uniform(0, 100)
        for io in m.disk_io:
            io.read_count, io.write_count = rng.randrange(2**32), rng.randrange(2**32)
            io.read_bytes, io.write_bytes = rng.randrange(2**44), rng.randrange(2**44)
            io.read_time_ms, io.write_time_ms = rng.randrange(2**32), rng.randrange(2**32)
        for counters in [m.network.total, *(i.counters for i in m.network.interfaces)]:
            for field in counters.DESCRIPTOR.fields:
                setattr(counters, field.name, rng.randrange(2**40))
        m.uptime_seconds = rng.uniform(0, 10**7)
        out.append(m)
    return out


def kafka_run(bootstrap: str, codec: str, n: int) -> dict[str, Any]:
    stats: list[dict[str, Any]] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": codec,
            "statistics.interval.ms": 100,
            "stats_cb": lambda s: stats.append(json.loads(s)),
        }
    )
    batch = [records.encode(m, agent_id=m.agent_id, server_id="bench") for m in varied_records(1000)]
    key, value, headers = batch[0]

    def tx_bytes_now() -> int:
        """librdkafka's total bytes sent, from a statistics report emitted after this call."""
        stats.clear()
        while not stats:
            producer.poll(0.05)
        return int(stats[-1]["tx_bytes"])

    producer.produce("monitoring-data", value=value, key=key, headers=headers)  # connect, fetch metadata
    producer.flush(10)
    base = tx_bytes_now()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(n):
        key, value, headers = batch[i % len(batch)]
        while True:
            try:
                producer.produce("monitoring-data", value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sent = tx_bytes_now() - base
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"bytes_per_record": sent / n, "cpu_us_per_record": 1e6 * cpu / n, "value_bytes": len(value)}


START, END = "<!-- compression:start -->", "<!-- compression:end -->"


def markdown(stream: dict[str, Any], kafka: dict[str, Any], args: argparse.Namespace) -> str:
    none, gz = stream["none"], stream["gzip"]
    rows = [
        f"| {name} | {r['bytes_per_record']:,.0f} | {r['agent_cpu_us_per_record']:.1f} | "
        f"{r['server_cpu_us_per_record']:.1f} |"
        for name, r in (("none", none), ("gzip", gz))
    ]
    rows.append(
        f"| gzip / none | **{gz['bytes_per_record'] / none['bytes_per_record']:.2f}** | "
        f"{gz['agent_cpu_us_per_record'] / none['agent_cpu_us_per_record']:.2f} | "
        f"{gz['server_cpu_us_per_record'] / none['server_cpu_us_per_record']:.2f} |"
    )
    base = kafka["none"]
    codecs = [
        f"| {c} | {r['bytes_per_record']:,.0f} | {r['bytes_per_record'] / base['bytes_per_record']:.2f} | "
        f"{r['cpu_us_per_record']:.1f} |"
        for c, r in kafka.items()
    ]
    return f"""{START}
## Compression ({time.strftime("%Y-%m-%d")})

    .venv/bin/python bench/compression.py --agents {args.agents} --rate {args.rate:g} --seconds {args.seconds:g} --records {args.records} --write-doc

Agent stream: {args.agents} simulated agents sending a real psutil record of this machine
({kafka["none"]["value_bytes"]:,} bytes serialized), {args.rate:,.0f} records/s for {args.seconds:g} s,
through a counting relay into one monitord, without and with gzip (`connection.compression`).
Bytes are what agents sent (HTTP/2 framing, heartbeats and acks' window updates included).

| agent stream | bytes per record on the wire | agent CPU µs/record | monitord CPU µs/record |
|---|---:|---:|---:|
{chr(10).join(rows)}

Kafka producer (`kafka.compression`), {args.records:,} records cycling through 1,000 variations of that
record (100 hosts × 10 samples: ids, times, percentages, memory and every counter differ), idempotent,
acks=all, linger 5 ms; bytes from librdkafka's statistics (`tx_bytes`, request framing included):

| codec | bytes per record to the broker | vs none | producer CPU µs/record |
|---|---:|---:|---:|
{chr(10).join(codecs)}
{END}"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--rate", type=float, default=2000, help="records/s over all agents")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--records", type=int, default=100_000, help="records per Kafka codec")
    p.add_argument("--write-doc", action="store_true", help="put the table into docs/benchmarks.md")
    args = p.parse_args()
    args.window = 64
    tmp = Path(tempfile.mkdtemp(prefix="bench-compression-"))
    broker, own_broker = bench_broker(tmp)
    try:
        stream = {c: stream_run(tmp, broker.bootstrap, args, c) for c in ("none", "gzip")}
        kafka = {c: kafka_run(broker.bootstrap, c, args.records) for c in ("none", "lz4", "zstd", "gzip")}
    finally:
        if own_broker:
            broker.stop()
    table = markdown(stream, kafka, args)
    print(table)
    if args.write_doc:
        replace_section(START, END, table)
    print(json.dumps({"stream": stream, "kafka": kafka, "agents": args.agents, "rate": args.rate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

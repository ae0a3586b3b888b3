"""Turn bench/run's JSON results into the M1/M4/M5 sections of docs/benchmarks.md (M3 is written
by bench/command_latency.py itself)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka
import google.protobuf
import grpc

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench-run:start -->", "<!-- bench-run:end -->"


def replace_section(start: str, end: str, section: str) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) into docs/benchmarks.md,
    replacing the previous one; other sections stay."""
    doc = REPO / "docs/benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


def fp_rows(fp: dict[str, Any], interval: str) -> str:
    """M4 rows for one interval: monitor-agentd, node_exporter, and their ratio."""

    def r(x: float | None) -> str:
        return "—" if x is None else f"{x:.2f}"

    return "\n".join(
        (
            f"| {interval} | monitor-agentd | {fp['cpu_percent']:.2f} | {fp['pss_mib_max']:.1f} |",
            f"| {interval} | node_exporter | {fp['node_exporter_cpu_percent']:.2f} | "
            f"{fp['node_exporter_pss_mib_max']:.1f} |",
            f"| {interval} | ratio | {r(fp['cpu_ratio'])} | {r(fp['pss_ratio'])} |",
        )
    )


def main() -> int:
    out, command = Path(sys.argv[1]), sys.argv[2]
    ingest = json.loads((out / "ingest.json").read_text())
    fp1, fp10 = (json.loads((out / f).read_text()) for f in ("fp1.json", "fp10.json"))
    storm = json.loads((out / "storm.json").read_text())
    scale = json.loads((out / "scale.json").read_text())
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    m, e, k = ingest["monitord"], ingest["grpc_echo"], ingest["kafka_produce_only"]
    m70 = ingest["monitord_70"]
    text = f"""{START}
## bench/run ({time.strftime("%Y-%m-%d")})

Command: `{command}`. Machine: {cores} cores ({cpu}), Linux {platform.release()}; Python
{platform.python_version()}, grpcio {grpc.__version__}, protobuf {google.protobuf.__version__},
confluent-kafka {metadata.version("confluent-kafka")} (librdkafka {confluent_kafka.libversion()[0]}),
Kafka 4.1.1 (KRaft, single node). Kafka, servers and load generators share the machine.

### M1 ingest (records/s into Kafka with acks=all and acks back to the agents)

| system | records/s | ratio | server CPU (cores) | load-generator CPU (cores) | ack latency p50 / p99 ms |
|---|---:|---:|---:|---:|---:|
| monitord | {m["rate"]:,.0f} | **{ingest["ratio_to_lower_ceiling"]:.2f}** of the lower ceiling | {m["server_cpu"]:.2f} | {m["generator_cpu"]:.2f} | {m["p50_ms"]:.0f} / {m["p99_ms"]:.0f} |
| (a) bare grpc.aio echo (gRPC ceiling) | {e["rate"]:,.0f} | 1.00 | {e["server_cpu"]:.2f} | {e["generator_cpu"]:.2f} | {e["p50_ms"]:.0f} / {e["p99_ms"]:.0f} |
| (b) produce-only confluent-kafka loop (Kafka ceiling) | {k["rate"]:,.0f} | — | — | — | — |

{ingest["agents"]} simulated agents, each keeping up to {ingest["window"]} records in flight, for {ingest["seconds"]:.0f} s per system.
The latencies in the table are at saturation. **At 70 % of monitord's rate** (paced senders,
{m70["rate"]:,.0f} records/s): receive-to-ack latency p50 **{m70["p50_ms"]:.0f} ms**, p99 **{m70["p99_ms"]:.0f} ms**
(server CPU {m70["server_cpu"]:.2f}). Acks are cumulative: {m["records_per_ack"]:.1f} records per ack message at
saturation (the echo server answers every message). monitord is one Python process: CPU-bound on one
core (server CPU ≈ 1.0); the echo server is bound by the load generator sharing the 2 cores.

### M2 scale (one monitord, {scale["agents"]:,} agent streams, metrics + heartbeat every 10 s)

| streams held | server RSS | per stream | command p50 / p99 at that load | connect all | server / generator CPU (steady) |
|---:|---:|---:|---:|---:|---:|
| {scale["agents"]:,} | {scale["server_rss_mib"]:.0f} MiB (idle {scale["server_rss_base_mib"]:.0f}) | **{scale["kib_per_stream"]:.0f} KiB** | {scale["command_p50_ms"]:.1f} / **{scale["command_p99_ms"]:.0f} ms** ({scale["command_samples"]} samples) | {scale["connect_seconds"]:.0f} s | {scale["server_cpu_steady"]:.2f} / {scale["generator_cpu_steady"]:.2f} |

Agents: {scale["generator"]} (bench/scale.py), in 4 processes dialing 127.0.0.1-4.

### M4 agent footprint (monitor-agentd, real mode, vs node_exporter {fp1["node_exporter_version"]})

| interval | agent | CPU (% of one core) | PSS max (MiB) |
|---:|---|---:|---:|
{fp_rows(fp1, "1 s")}
{fp_rows(fp10, "10 s")}

node_exporter (default collectors) is scraped at the same interval over the same window as the agent,
both running at once; the ratio row is monitor-agentd / node_exporter. The scraper's CPU is not counted.

### M5 reconnect storm

{storm["agents"]:,} agents connected, monitord stopped (SIGTERM: agents redirected) and a new process
started on the same port: all back after **{storm["all_back_seconds"]:.1f} s**; {storm["attempts"]:,} connection
attempts, peak {storm["peak_attempts_per_second"]:,}/s; server errors: {storm["server_errors"]}.
CPU during the storm (cores): new monitord {storm["server_cpu"]:.2f}, agent fleet processes {storm["fleet_cpu"]:.2f}.
Attempts per second after the restart began (first 10 s): {dict(list(storm["histogram"].items())[:10])}.
{END}"""
    replace_section(START, END, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

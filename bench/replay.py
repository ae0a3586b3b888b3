"""Start-up replay of held commands: how long a monitord start takes to READY when the last
``commands.max_ttl_seconds`` hold N commands and their responses, against a start on empty topics
in the same run.

    .venv/bin/python bench/replay.py --commands 20000

Of the N commands 90 % have a DELIVERED and a final response (a few hundred bytes of output each),
10 % are still held (for agents that never connected). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import bench_broker, start_monitord


def fill(bootstrap: str, n: int, tag: str) -> int:
    """Produce ``n`` commands and the responses of 90 % of them; returns how many stay held."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 200_000})
    held = 0
    for i in range(n):
        agent_id = f"{tag}-{i % (n // 50 or 1)}"
        command = pb.CommandMessage(command_id=f"{tag}-c{i}", agent_id=agent_id, command="ping", ttl_seconds=3600)
        command.created_at.GetCurrentTime()
        key, value, headers = records.encode(command, agent_id=agent_id, server_id="bench")
        producer.produce("commands", key=key, value=value, headers=headers)
        if i % 10 == 0:
            held += 1
            continue
        for status in (pb.DELIVERED, pb.SUCCEEDED):
            response = pb.CommandResponseMessage(
                command_id=command.command_id, agent_id=agent_id, status=status, stdout="x" * 300
            )
            key, value, headers = records.encode(response, agent_id=agent_id, server_id="bench")
            producer.produce("command-responses", key=key, value=value, headers=headers)
        producer.poll(0)
    assert producer.flush(60) == 0
    return held


def time_to_ready(tmp: Path, bootstrap: str, name: str) -> tuple[float, str]:
    started = time.monotonic()
    server, _ = start_monitord(tmp, bootstrap, name=name, extra={"server": {"log_each_record": False}})
    took = time.monotonic() - started
    text = server.text()
    server.stop()
    return took, text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", type=int, default=20_000)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    broker, own_broker = bench_broker(tmp)
    try:
        empty, _ = time_to_ready(tmp, broker.bootstrap, "monitord-empty")
        held = fill(broker.bootstrap, args.commands, f"replay-{uuid.uuid4().hex[:6]}")
        full, text = time_to_ready(tmp, broker.bootstrap, "monitord-full")
        replayed = re.search(r"caught up: (\d+) records replayed", text)
        rebuilt = re.search(r"Commands: (\d+) held for agents", text)
        print(
            json.dumps(
                {
                    "bench": "replay",
                    "commands": args.commands,
                    "records_replayed": int(replayed.group(1)) if replayed else None,
                    "held_expected": held,
                    "held_rebuilt": int(rebuilt.group(1)) if rebuilt else None,
                    "ready_empty_s": round(empty, 2),
                    "ready_full_s": round(full, 2),
                    "ratio_full_vs_empty": round(full / empty, 2),
                    "replay_records_per_s": round(int(replayed.group(1)) / max(full - empty, 0.01))
                    if replayed
                    else None,
                }
            )
        )
    finally:
        if own_broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

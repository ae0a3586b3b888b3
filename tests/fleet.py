"""Run many real Agent instances in one process (one gRPC channel each) and report the outcome.

Used by tests and benchmarks to simulate a fleet without paying one interpreter per agent. Prints
one JSON object: {"agents": {id: {"exit": status, "acked": n, "sequence": n}}}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys

from monitor_agentd.app import Agent
from monitor_agentd.config import AgentConfig, AgentSection, CollectionSection
from monitoring_common import logsetup


async def run_fleet(
    server: str, ids: list[str], iterations: int, interval: float, state_root: str
) -> dict[str, dict[str, int]]:
    base = AgentConfig()
    agents = []
    for agent_id in ids:
        cfg = dataclasses.replace(
            base,
            agent=AgentSection(id=agent_id, servers=(server,), state_dir=f"{state_root}/{agent_id}"),
            collection=CollectionSection(mode="mock", interval_seconds=interval, iterations=iterations),
        )
        agents.append(Agent(cfg))
    stop = asyncio.Event()
    results = await asyncio.gather(*(a.run(stop) for a in agents))
    return {
        a.agent_id: {"exit": rc, "acked": a.spool.acked, "sequence": a.sequence}
        for a, rc in zip(agents, results, strict=True)
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--state-root", default="/tmp/fleet-state")
    args = p.parse_args()
    logsetup.configure("warning")
    logging.getLogger("monitor_agentd").setLevel(logging.WARNING)
    ids = [f"{args.prefix}-{i:04d}" for i in range(args.count)]
    result = asyncio.run(run_fleet(args.server, ids, args.iterations, args.interval, args.state_root))
    json.dump({"agents": result}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

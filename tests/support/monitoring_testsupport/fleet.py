"""Run many real Agent instances in one process (one gRPC channel each) and report the outcome.

Used by tests and benchmarks to simulate a fleet without paying one interpreter per agent
(``python -m monitoring_testsupport.fleet``). With ``--iterations 0`` the fleet runs until
SIGTERM/SIGINT; once every agent has a stream it says ``READY=1`` with ``STATUS=fleet: N/N
connected`` (sd_notify, when ``$NOTIFY_SOCKET`` is set) and prints the same line to stderr. At the end it prints one JSON object on stdout:
{"agents": {id: {"exit": status, "acked": n, "sequence": n}}}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys

from monitor_agentd.app import Agent
from monitor_agentd.config import AgentConfig, AgentSection, AgentTlsSection, CollectionSection
from monitoring_common import logsetup
from monitoring_common.notify import Notifier


def make_agents(
    server: str, ids: list[str], iterations: int, interval: float, state_root: str, ack_timeout: float = 60.0
) -> list[Agent]:
    base = AgentConfig()
    return [
        Agent(
            dataclasses.replace(
                base,
                agent=AgentSection(id=agent_id, servers=(server,), state_dir=f"{state_root}/{agent_id}"),
                collection=CollectionSection(mode="mock", interval_seconds=interval, iterations=iterations),
                connection=dataclasses.replace(
                    base.connection, ack_timeout_seconds=ack_timeout, tls=AgentTlsSection(mode="plaintext")
                ),
            )
        )
        for agent_id in ids
    ]


async def report_connected(agents: list[Agent]) -> None:
    while True:
        connected = sum(a.link.connected.is_set() for a in agents)
        if connected == len(agents):
            line = f"fleet: {connected}/{len(agents)} connected"
            Notifier().ready(line)
            print(line, file=sys.stderr, flush=True)
            return
        await asyncio.sleep(0.2)


async def run_fleet(agents: list[Agent]) -> dict[str, dict[str, int]]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reporter = asyncio.create_task(report_connected(agents))
    results = await asyncio.gather(*(a.run(stop) for a in agents))
    reporter.cancel()
    return {
        a.agent_id: {"exit": rc, "acked": a.spool.acked, "sequence": a.sequence, "dropped": a.spool.dropped}
        for a, rc in zip(agents, results, strict=True)
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--server", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--state-root", default="/tmp/fleet-state")
    p.add_argument("--ack-timeout", type=float, default=60.0)
    p.add_argument("--attempts-file", help="write every agent's connection attempt times (JSON) here")
    args = p.parse_args()
    logsetup.configure("warning")
    logging.getLogger("monitor_agentd").setLevel(logging.WARNING)
    ids = [f"{args.prefix}-{i:04d}" for i in range(args.count)]
    agents = make_agents(args.server, ids, args.iterations, args.interval, args.state_root, args.ack_timeout)
    result = asyncio.run(run_fleet(agents))
    if args.attempts_file:
        with open(args.attempts_file, "w") as f:
            json.dump({a.agent_id: list(a.link.attempts) for a in agents}, f)
    json.dump({"agents": result}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The matrix's agents: real monitor-agentd processes, each kept across its restarts (same agent
id, same state directory, one log per incarnation) so the highest sequence it ever collected can
be read from its logs."""

from __future__ import annotations

import copy
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_testsupport.procs import COLLECTED, Proc, start_agent

INTERVAL = 0.5
#: How long the slow command runs.
SLOW_SECONDS = 5
REGISTERED = r"✓ Agent registered"


def agent_config(**connection: float) -> dict[str, Any]:
    """What every matrix agent runs with: quick reconnects and the slow command."""
    return {
        "connection": {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0, **connection},
        "commands": {
            "kill_grace_seconds": 1,
            "definitions": {"slow": {"argv": ["/bin/sleep", str(SLOW_SECONDS)], "timeout_seconds": 30}},
        },
    }


@dataclass
class Agent:
    """One agent id with its state directory and the processes that ran it."""

    agent_id: str
    root: Path
    servers: list[str]
    config: dict[str, Any] = field(default_factory=agent_config)
    #: A command prefix, e.g. ``ip netns exec NS`` to run it in a network namespace.
    wrap: list[str] | None = None
    runs: list[Proc] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.root / f"state-{self.agent_id}"

    @property
    def proc(self) -> Proc:
        return self.runs[-1]

    def start(self) -> Proc:
        """Start the next incarnation (not waiting for it to connect)."""
        tmp = self.root / f"{self.agent_id}-run{len(self.runs) + 1}"
        tmp.mkdir(parents=True)
        cfg = copy.deepcopy(self.config)
        cfg.setdefault("agent", {})["state_dir"] = str(self.state_dir)
        extra = [arg for server in self.servers[1:] for arg in ("--server", server)]
        proc = start_agent(
            tmp,
            self.servers[0],
            self.agent_id,
            iterations=0,
            interval=INTERVAL,
            config=cfg,
            extra_args=extra,
            wrap=self.wrap,
        )
        self.runs.append(proc)
        return proc

    def wait_connected(self, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until the current incarnation registered with a server ``count`` times."""
        self.proc.wait_for(REGISTERED, timeout, count)

    def connections(self) -> int:
        """How often the current incarnation registered so far."""
        return self.proc.text().count("✓ Agent registered")

    def kill(self) -> None:
        """SIGKILL the current incarnation and reap it."""
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)

    def highest(self) -> int:
        """The highest sequence any incarnation logged as collected (logged after the spool write)."""
        return max((int(n) for p in self.runs for n in COLLECTED.findall(p.text())), default=0)

    def running(self) -> bool:
        return bool(self.runs) and self.proc.running()

    def stop(self) -> None:
        for proc in self.runs:
            proc.stop(timeout=10)


def impostor_answers(address: str, agent_id: str, command_ids: list[str], timeout: float = 15.0) -> int:
    """Stream, as ``agent_id``, a DELIVERED and a SUCCEEDED for each of ``command_ids`` (commands of
    another agent); returns how many of those responses monitord refused."""
    messages = [
        pb.AgentMessage(command_response=pb.CommandResponseMessage(command_id=c, agent_id=agent_id, status=status))
        for c in command_ids
        for status in (pb.DELIVERED, pb.SUCCEEDED)
    ]
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.MonitoringServiceStub(channel)
        refused = 0
        replies = stub.StreamCommunication(iter(messages), metadata=(("agent-id", agent_id),), timeout=timeout)
        for reply in replies:
            if reply.HasField("acknowledgment"):
                refused += not reply.acknowledgment.success
        return refused

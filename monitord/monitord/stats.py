"""Server-wide counters, shown in the periodic status line, STATUS= and /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServerStats:
    """Monotonic counters since start (event-loop confined)."""

    received: int = 0
    forwarded: int = 0
    failed: int = 0
    rejected: int = 0
    acks: int = 0
    heartbeats: int = 0
    command_responses: int = 0
    streams_opened: int = 0
    #: Command responses agents sent through their streams, by status name.
    responses_by_status: dict[str, int] = field(default_factory=dict)
    #: Highest spool-drop count each agent reported in its heartbeats.
    agent_drops: dict[str, int] = field(default_factory=dict)

    def note_agent_drops(self, agent_id: str, dropped: int) -> None:
        self.agent_drops[agent_id] = max(dropped, self.agent_drops.get(agent_id, 0))

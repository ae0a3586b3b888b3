"""The promises, checked over the history read back from Kafka; each becomes one figure.

1. metrics: per agent, sequences 1..highest collected are all in Kafka (lost = missing ones);
2. order: the first occurrence of each sequence comes in increasing order (a resend is a duplicate);
3. commands: every confirmed command has exactly one final status (identical repeats allowed);
4. latency: ``ping`` to a connected agent after recovery, command record → DELIVERED record;
5. presence: each agent's latest presence is CONNECTED, by log order and by the ordering rule;
6. kafka: what monitord said about Kafka matches what the fault did (:mod:`.kafka_view`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.commands import FINAL_STATUSES
from monitoring_testsupport.matrix.history import Rec
from monitoring_testsupport.matrix.workload import Sent

INVARIANTS = ("metrics", "order", "commands", "latency", "presence", "kafka")
_GONE = {pb.DISCONNECTED, pb.STALE}


@dataclass(frozen=True)
class Figure:
    """One invariant of one cell: the figure as printed, whether it holds, and the numbers."""

    invariant: str
    text: str
    ok: bool
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellResult:
    """A cell's figures, in :data:`INVARIANTS` order, and what the cell noticed on the way."""

    label: str
    fault: str
    figures: list[Figure]
    notes: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.figures)

    def failed(self) -> list[str]:
        return [f"{f.invariant}: {f.text}" for f in self.figures if not f.ok]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seqs(recs: Iterable[Rec], agent_id: str) -> list[int]:
    return [int(r.message.sequence) for r in recs if r.agent_id == agent_id]  # type: ignore[attr-defined]


def metrics_complete(recs: Sequence[Rec], targets: dict[str, int]) -> bool:
    """Every agent's sequences 1..target are present."""
    return all(set(range(1, n + 1)) <= set(_seqs(recs, a)) for a, n in targets.items())


def metrics(recs: Sequence[Rec], targets: dict[str, int]) -> Figure:
    lost = {a: n - len(set(range(1, n + 1)) & set(_seqs(recs, a))) for a, n in targets.items()}
    total = sum(lost.values())
    collected = sum(targets.values())
    return Figure("metrics", f"{total} lost", total == 0 and collected > 0, {"collected": collected, "lost": lost})


def order(recs: Sequence[Rec], agent_ids: Iterable[str]) -> Figure:
    dup = reordered = 0
    examples: list[str] = []
    for agent_id in agent_ids:
        seen: set[int] = set()
        top = 0
        for seq in _seqs(recs, agent_id):
            if seq in seen:
                dup += 1
                continue
            seen.add(seq)
            if seq < top:
                reordered += 1
                if len(examples) < 5:
                    examples.append(f"{agent_id}: #{seq} after #{top}")
            top = max(top, seq)
    values = {"dup": dup, "reordered": reordered, "examples": examples}
    return Figure("order", f"{dup} dup / {reordered} reordered", reordered == 0, values)


def commands(recs: Sequence[Rec], sent: Sequence[Sent]) -> Figure:
    finals: dict[str, list[tuple[str, str]]] = {s.command_id: [] for s in sent}
    for r in recs:
        status = pb.CommandStatus.Name(r.message.status)  # type: ignore[attr-defined]
        mine = finals.get(r.message.command_id)  # type: ignore[attr-defined]
        if mine is not None and status in FINAL_STATUSES:
            mine.append((status, r.message.reported_by))  # type: ignore[attr-defined]
    missing = sorted(c for c, f in finals.items() if not f)
    conflicting = sorted(c for c, f in finals.items() if len(set(f)) > 1)
    repeats = sum(len(f) - 1 for f in finals.values() if len(f) > 1 and len(set(f)) == 1)
    text = f"{len(missing)} missing / {len(conflicting)} conflicting"
    if repeats:
        text += f" ({repeats} identical dup)"
    kinds = {s.command_id: s.kind for s in sent}
    values = {
        "commands": len(sent),
        "missing": [f"{c} ({kinds[c]})" for c in missing],
        "conflicting": {c: finals[c] for c in conflicting},
        "identical_duplicates": repeats,
    }
    return Figure("commands", text, not missing and not conflicting and bool(sent), values)


def latency(
    recs: Sequence[Rec], sent: Sequence[Sent], recovered_at: float | None, agents: set[str], limit: float
) -> Figure:
    if recovered_at is None:
        return Figure("latency", "no recovery", False)
    delivered: dict[str, int] = {}
    for r in recs:
        if r.message.status == pb.DELIVERED:  # type: ignore[attr-defined]
            delivered.setdefault(r.message.command_id, r.timestamp_ms)  # type: ignore[attr-defined]
    probes = [
        s
        for s in sent
        if s.kind == "ping"
        and s.agent_id in agents
        and s.timestamp_ms is not None
        and s.timestamp_ms >= recovered_at * 1000
    ]
    waits = [
        (delivered[s.command_id] - s.timestamp_ms) / 1000
        for s in probes
        if s.command_id in delivered and s.timestamp_ms
    ]
    never = len(probes) - len(waits)
    worst = max(waits, default=0.0)
    if not probes:
        text = "no probes"
    elif not waits:
        text = f"{never}/{len(probes)} never DELIVERED"
    else:
        text = f"max {worst:.2f} s" + (f", {never}/{len(probes)} never DELIVERED" if never else "")
    values = {"probes": len(probes), "max_s": round(worst, 3), "never_delivered": never}
    return Figure("latency", text, bool(probes) and never == 0 and worst <= limit, values)


def winner(statuses: Sequence[Any]) -> Any:
    """The presence that wins by the ordering rule: a higher ``connection`` wins; within one
    connection DISCONNECTED/STALE beats CONNECTED; 0 (field absent) falls back to log order."""
    current: Any = None
    for s in statuses:
        conn, held = getattr(s, "connection", 0), getattr(current, "connection", 0)
        if current is None or conn == 0 or held == 0 or conn > held or (conn == held and s.state in _GONE):
            current = s
    return current


def presence(recs: Sequence[Rec], agent_ids: Sequence[str]) -> Figure:
    by_log = by_rule = 0
    wrong: dict[str, str] = {}
    for agent_id in agent_ids:
        mine = [r.message for r in recs if r.agent_id == agent_id]
        last, won = (mine[-1] if mine else None), winner(mine)
        by_log += last is not None and last.state == pb.CONNECTED  # type: ignore[attr-defined]
        by_rule += won is not None and won.state == pb.CONNECTED
        if last is None or won is None or last.state != pb.CONNECTED or won.state != pb.CONNECTED:  # type: ignore[attr-defined]
            wrong[agent_id] = "no record" if last is None else pb.AgentPresence.Name(last.state)  # type: ignore[attr-defined]
    n = len(agent_ids)
    text = f"{by_log}/{n} CONNECTED" if by_log == by_rule else f"log {by_log}/{n}, rule {by_rule}/{n} CONNECTED"
    return Figure(
        "presence", text, by_log == by_rule == n, {"log": by_log, "rule": by_rule, "agents": n, "wrong": wrong}
    )


def evaluate(
    *,
    label: str,
    fault: str,
    hist: dict[str, list[Rec]],
    targets: dict[str, int],
    sent: Sequence[Sent],
    recovered_at: float | None,
    probe_agents: set[str],
    limit: float,
    notes: list[str],
    seconds: float,
    extra: Sequence[Figure] = (),
) -> CellResult:
    """Every invariant of one cell over its history."""
    data, answers, status = hist["monitoring-data"], hist["command-responses"], hist["agent-status"]
    figures = [
        metrics(data, targets),
        order(data, targets),
        commands(answers, sent),
        latency(answers, sent, recovered_at, probe_agents, limit),
        presence(status, list(targets)),
        *extra,
    ]
    return CellResult(label, fault, figures, list(notes), round(seconds, 1))

"""Per-agent bookkeeping of the analysis consumer: duplicates, gaps, and rolling figures."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Sequences remembered per agent for duplicate detection (records replayed after a reconnect
#: arrive at most a spool's worth behind the newest one).
DEDUP_WINDOW = 100_000


@dataclass
class AgentFigures:
    """What the analyzer knows about one agent."""

    records: int = 0
    duplicates: int = 0
    first_sequence: int = 0
    last_sequence: int = 0
    cpu_sum: float = 0.0
    cpu_max: float = 0.0
    memory_last: float = 0.0
    window_records: int = 0
    _seen: set[int] = field(default_factory=set)

    def observe(self, sequence: int, cpu: float, memory: float) -> bool:
        """Count one record; False if (agent, sequence) was already seen (a duplicate)."""
        if sequence in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(sequence)
        if len(self._seen) > DEDUP_WINDOW:
            floor = max(self._seen) - DEDUP_WINDOW
            self._seen = {s for s in self._seen if s > floor}
        self.records += 1
        self.window_records += 1
        self.first_sequence = sequence if not self.first_sequence else min(self.first_sequence, sequence)
        self.last_sequence = max(self.last_sequence, sequence)
        self.cpu_sum += cpu
        self.cpu_max = max(self.cpu_max, cpu)
        self.memory_last = memory
        return True

    @property
    def missing(self) -> int:
        """Sequences in first..last never seen (within the dedup window): lost or not yet arrived."""
        if not self.records:
            return 0
        span = self.last_sequence - self.first_sequence + 1
        return max(0, span - self.records) if span <= DEDUP_WINDOW else 0

    def line(self, agent_id: str) -> str:
        avg = self.cpu_sum / self.records if self.records else 0.0
        return (
            f"  {agent_id}: {self.records} records (#{self.first_sequence}..#{self.last_sequence}, "
            f"{self.window_records} new, {self.missing} missing, {self.duplicates} duplicates dropped), "
            f"CPU avg {avg:.1f}% max {self.cpu_max:.1f}%, memory {self.memory_last:.1f}%"
        )

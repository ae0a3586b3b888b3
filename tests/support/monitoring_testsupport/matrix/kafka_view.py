"""What monitord said about Kafka during a cell, checked against what the fault did to Kafka.

The figure counts monitord's state lines (every incarnation of every server, in log order):
``Kafka unavailable`` (down), ``Kafka reachable again`` (up from down), ``Kafka degraded`` and
``Kafka healthy again``. It holds when monitord went down exactly as often as the fault took
confirmations away for longer than ``kafka.down_after_seconds`` (no flapping: one line each way
per outage), came back up each time, said "degraded" where the fault leaves partitions under
min ISR, and every running monitord's ``monitord_kafka_state`` gauge
reads up (2) once the fault is repaired.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from monitoring_testsupport.matrix.invariants import Figure
from monitoring_testsupport.procs import Monitord

_LINES = {
    "down": re.compile(r"Kafka unavailable: "),
    "up": re.compile(r"✓ Kafka reachable again"),
    "degraded": re.compile(r"Kafka degraded: "),
    "healthy": re.compile(r"✓ Kafka healthy again"),
}
#: monitord_kafka_state's value for "up".
UP = 2.0


def state_lines(text: str) -> dict[str, int]:
    """How many of each state line one monitord log holds."""
    return {name: len(pattern.findall(text)) for name, pattern in _LINES.items()}


def final_state(procs: Sequence[Monitord], timeout: float) -> list[float | None]:
    """Each running incarnation's monitord_kafka_state, waiting up to ``timeout`` s for up."""
    deadline = time.monotonic() + timeout
    values: list[float | None] = []
    for proc in procs:
        value: float | None = None
        while proc.running():
            try:
                value = proc.metrics().get("monitord_kafka_state")
            except OSError:
                value = None
            if value == UP or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        values.append(value)
    return values


def figure(runs: Sequence[Monitord], expected_downs: int, degraded: bool, timeout: float = 15.0) -> Figure:
    """The ``kafka`` figure of a cell whose fault should make monitord report down ``expected_downs``
    times (and, if ``degraded``, report partitions without a leader or under min ISR)."""
    counts = {name: 0 for name in _LINES}
    for proc in runs:
        for name, n in state_lines(proc.text()).items():
            counts[name] += n
    finals = final_state([p for p in runs if p.running()], timeout)
    at_end = "up" if finals and all(v == UP for v in finals) else f"state {finals}"
    text = f"down {counts['down']}/{expected_downs}"
    if counts["degraded"]:
        text += f", degraded {counts['degraded']}"
    text += f", {at_end} at end"
    ok = (
        counts["down"] == expected_downs == counts["up"] and at_end == "up" and (counts["degraded"] > 0 or not degraded)
    )
    if degraded and not counts["degraded"]:
        text += ", never degraded"
    return Figure("kafka", text, ok, {**counts, "expected_downs": expected_downs, "final": finals})

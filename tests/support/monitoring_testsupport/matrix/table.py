"""The matrix as a table (fault x invariant → figure, failures marked) and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from monitoring_testsupport.matrix.invariants import INVARIANTS, CellResult

FAIL = "FAIL "


def _cell(result: CellResult, invariant: str) -> str:
    for figure in result.figures:
        if figure.invariant == invariant:
            return ("" if figure.ok else FAIL) + figure.text
    return "-"


def render(results: Sequence[CellResult], title: str = "fault matrix") -> str:
    """A fixed-width table, one row per cell, plus the cells' notes underneath."""
    header = ["fault", *INVARIANTS, "s"]
    rows = [[r.label, *(_cell(r, i) for i in INVARIANTS), f"{r.seconds:.0f}"] for r in results]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]

    def line(row: list[str]) -> str:
        return " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    failed = sum(not r.ok for r in results)
    out = [f"{title}: {len(results)} cells, {failed} failing", line(header), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    for r in results:
        out += [f"  {r.label}: {note}" for note in r.notes]
        for figure in r.figures:
            if not figure.ok and figure.invariant == "commands":
                out.append(f"  {r.label}: missing {', '.join(figure.values.get('missing', [])[:6]) or '-'}")
            if not figure.ok and figure.invariant == "order":
                out.append(f"  {r.label}: reordered {', '.join(figure.values.get('examples', [])[:3])}")
    return "\n".join(out)


def to_json(results: Sequence[CellResult]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2, default=str)


def write_json(results: Sequence[CellResult], path: Path) -> None:
    path.write_text(to_json(results) + "\n")

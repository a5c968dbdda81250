"""From samples to cells: the median of a figure per (workload, case, engine), or why there is none."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from .run_state import Sample
from .specs import Col, Spec

LH = "labelhouse"


@dataclass(frozen=True)
class Cell:
    """A table cell: a value, or a status (n/a, timeout, error) with its reason."""

    value: Any = None
    status: str = ""
    reason: str = ""
    reps: int = 0

    @property
    def ok(self) -> bool:
        return not self.status


def _status(result: dict[str, Any]) -> tuple[str, str]:
    if "unsupported" in result:
        return "n/a", str(result["unsupported"])
    if "timeout" in result:
        return f"timeout {result['timeout']:.0f} s", f"did not finish in {result['timeout']:.0f} s"
    return "error", str(result.get("error", result))


def cell(samples: list[Sample], spec: Spec, col: Col, peer: str) -> Cell:
    """The median of `col` over the peer's successful samples of the column's case."""
    mine = [s.result for s in samples if s.workload == spec.id and s.case == col.case and s.peer == peer]
    values = [r["ok"][col.key] for r in mine if "ok" in r and col.key in r["ok"]]
    if values:
        if col.unit in ("text", "bool"):
            return Cell(values[-1] if col.unit == "text" else all(values), reps=len(values))
        finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return Cell(statistics.median(finite) if finite else None, reps=len(values))
    failed = [r for r in mine if "ok" not in r]
    if failed:
        status, reason = _status(failed[0])
        return Cell(status=status, reason=reason)
    return Cell(status="-", reason="")


def how(samples: list[Sample], spec: Spec, peer: str) -> str:
    """The API the engine used for the workload's main case (its adapter's note)."""
    case = spec.how_case or spec.cols[0].case
    for s in samples:
        if s.workload == spec.id and s.case == case and s.peer == peer and "ok" in s.result:
            return str(s.result["ok"].get(spec.how_key, ""))
    return ""


def ratio(value: Cell, base: Cell) -> float | None:
    """Engine / Labelhouse for one cell (None when either is missing or Labelhouse's is zero)."""
    if not (value.ok and base.ok) or value.value is None or base.value is None:
        return None
    if base.value == 0:
        return None
    return float(value.value) / float(base.value)


def verdict(samples: list[Sample], spec: Spec, col: Col, peers: list[str]) -> str:
    """Whether Labelhouse meets the issue's target for a column, with the figures that decide it."""
    mine = cell(samples, spec, col, LH)
    others = {p: cell(samples, spec, col, p) for p in peers if p != LH}
    measured = {p: c.value for p, c in others.items() if c.ok and c.value is not None}
    if not mine.ok or mine.value is None:
        return f"NOT MEASURED ({mine.status} {mine.reason})"
    if col.target == "zero":
        return "MET" if mine.value == 0 else f"MISSED ({mine.value})"
    if not measured:
        return "MET (no peer could do it)"
    best_peer = min(measured, key=lambda p: measured[p])
    best = measured[best_peer]
    r = mine.value / best if best else math.inf
    if col.target == "ahead":
        ok = mine.value <= best
        return f"{'MET' if ok else 'MISSED'}: {r:.2f}x of the best peer ({best_peer})"
    ok = r <= 2
    return f"{'MET' if ok else 'MISSED'}: {r:.2f}x of the best peer ({best_peer})"

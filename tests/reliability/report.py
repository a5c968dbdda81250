"""Results of the reliability suite: tests append JSON lines to a file, run.py renders them as markdown.

Recording is on only when LABELHOUSE_RELIABILITY_RESULTS names a file (run.py sets it), so a plain
`pytest` run writes nothing.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_ENV = "LABELHOUSE_RELIABILITY_RESULTS"


@dataclass(frozen=True)
class LoadResult:
    """One load run: processes committing to one dataset for a bounded time."""

    backend: str
    processes: int
    seconds: float
    commits: int
    rows: int
    engine_retries: int  # extra commit attempts inside the engine (lost races that rebased and retried)
    caller_retries: int  # commits that raised CommitConflictError and were retried with their idempotency key
    rows_lost: int
    rows_duplicated: int
    rows_unacknowledged: int  # present although the writer never saw its commit succeed
    errors: int
    valid: bool

    @property
    def commits_per_second(self) -> float:
        return self.commits / self.seconds if self.seconds else 0.0


def record(kind: str, payload: Any) -> None:
    """Append one result (a dataclass) to the results file, if the runner asked for one."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, **asdict(payload)}) + "\n")


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _table(header: list[str], body: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return lines


def _failed(r: dict[str, Any]) -> bool:
    return r.get("known_bug") is None and (bool(r["problems"]) or r["outcome"] == "crash")


def _counts(trials: list[dict[str, Any]]) -> list[Any]:
    """The per-group numbers of the tables: outcomes, rows lost/duplicated/wrong, crashes, failures."""
    return [
        len(trials),
        *(sum(r["outcome"] == o for r in trials) for o in ("ok", "raised", "raised_landed")),
        sum(r["rows_lost"] for r in trials),
        sum(r["rows_duplicated"] for r in trials),
        sum(r["rows_wrong"] for r in trials),
        sum(r["outcome"] == "crash" for r in trials),
        sum(r.get("known_bug") is not None for r in trials),
        sum(_failed(r) for r in trials),
    ]


COUNT_HEADER = [
    "trials", "ok", "raised", "raised, landed", "rows lost", "rows duplicated", "rows wrong", "crashes",
    "known bug", "failed checks",
]  # fmt: skip


def render(results: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    """The markdown report: totals, the fault matrix per backend and operation, load runs, failures."""
    trials = [r for r in results if r["kind"] == "trial"]
    loads = [r for r in results if r["kind"] == "load"]
    lines = [f"# {title}", "", *notes, "", "## Totals", ""]
    operations = len({r["operation"] for r in trials})
    faults = len({r["fault"] for r in trials})
    lines += _table(
        ["faults tried", "fault kinds", "operations", *COUNT_HEADER[1:], "load rows lost", "load rows duplicated"],
        [[len(trials), faults, operations, *_counts(trials)[1:],
          sum(r["rows_lost"] for r in loads), sum(r["rows_duplicated"] for r in loads)]],
    )  # fmt: skip
    lines += [
        "",
        "## Fault matrix",
        "",
        "A trial: one fault at one store call of one operation (then a retry if it raised).",
        "",
    ]
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in trials:
        by[(r["backend"], r["operation"])].append(r)
    body = []
    for (backend, operation), rs in sorted(by.items()):
        kinds = Counter(r["fault"] for r in rs)
        body.append([backend, operation, ", ".join(f"{f} {n}" for f, n in sorted(kinds.items())), *_counts(rs)])
    lines += _table(["backend", "operation", "faults", *COUNT_HEADER], body)
    if loads:
        lines += ["", "## Load", "", "Processes committing to one dataset; every row audited afterwards.", ""]
        lines += _table(
            ["backend", "processes", "seconds", "commits", "commits/s", "rows", "engine retries",
             "caller retries", "rows lost", "rows duplicated", "unacknowledged rows", "errors", "validate"],
            [[
                r["backend"], r["processes"], f"{r['seconds']:.0f}", r["commits"],
                f"{r['commits'] / r['seconds']:.1f}" if r["seconds"] else "0", r["rows"],
                r["engine_retries"], r["caller_retries"], r["rows_lost"], r["rows_duplicated"],
                r["rows_unacknowledged"], r["errors"], "ok" if r["valid"] else "FAILED",
            ] for r in loads],
        )  # fmt: skip
    known = Counter(r["known_bug"] for r in trials if r.get("known_bug"))
    if known:
        lines += ["", "## Known bugs (xfail regressions in test_regressions.py)", ""]
        lines += [f"- {name}: {n} trial(s)" for name, n in sorted(known.items())]
    failed = [r for r in trials if _failed(r)]
    if failed:
        lines += ["", "## Failed trials", ""]
        for r in failed[:50]:
            first = r["problems"][0].splitlines()[0] if r["problems"] else r["outcome"]
            lines.append(f"- {r['backend']} {r['operation']}: {r['point']}: {first}")
    return "\n".join(lines) + "\n"

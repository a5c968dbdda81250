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
    error_messages: tuple[str, ...] = ()  # the first few, so a failed run says what went wrong

    @property
    def commits_per_second(self) -> float:
        return self.commits / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class FuzzResult:
    """One parser fuzzed with Hypothesis: what it did with the inputs."""

    parser: str
    inputs: int
    ok: int  # returned (possibly with rejected rows)
    rejected: int  # rows or members returned as rejects with a reason
    raised: int  # raised a documented error (the StorageError tree)
    crashes: int  # any other exception: must be 0


@dataclass(frozen=True)
class HostileCase:
    """One explicit hostile input (a 2 GB line, a path traversal...) and what became of it."""

    case: str
    outcome: str  # e.g. "refused: <the error's first words>"
    passed: bool


@dataclass(frozen=True)
class ProcessFault:
    """One process-level fault (a SIGKILLed ingest, a restarted service), the retry, then the audit."""

    scenario: str
    trials: int  # kills or restarts
    changes: int  # changes the source sent (batches, webhooks)
    rows: int  # rows the source holds
    rows_lost: int
    rows_duplicated: int
    applied_twice: int  # commits beyond one per change
    problems: int  # validate() problems, garbage left after vacuum, staged batches left
    detail: str


@dataclass(frozen=True)
class WebhookLoad:
    """The webhook receiver under load (bench/webhooks_load.py)."""

    webhooks: int
    concurrency: int
    accepted: int
    errors: int
    events: int  # distinct Prefect events the accepted webhooks became
    applied: int  # webhooks found applied exactly once by the webhook flow (run twice over all of them)
    apply_seconds: float  # the first run of the webhook flow, collecting and applying them all
    p50_ms: float
    p99_ms: float
    per_second: float


def record(kind: str, payload: Any) -> None:
    """Append one result (a dataclass) to the results file, if the runner asked for one."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    line = (json.dumps({"kind": kind, **asdict(payload)}) + "\n").encode()
    # One O_APPEND write per line: run.py's lanes append to the same file at once.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _table(header: list[str], body: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return lines


def _failed(r: dict[str, Any]) -> bool:
    return bool(r["problems"]) or r["outcome"] == "crash"


def _counts(trials: list[dict[str, Any]]) -> list[Any]:
    """The per-group numbers of the tables: outcomes, rows lost/duplicated/wrong, crashes, failures."""
    return [
        len(trials),
        *(sum(r["outcome"] == o for r in trials) for o in ("ok", "raised", "raised_landed")),
        sum(r["rows_lost"] for r in trials),
        sum(r["rows_duplicated"] for r in trials),
        sum(r["rows_wrong"] for r in trials),
        sum(r["outcome"] == "crash" for r in trials),
        sum(_failed(r) for r in trials),
    ]


COUNT_HEADER = [
    "trials", "ok", "raised", "raised, landed", "rows lost", "rows duplicated", "rows wrong", "crashes",
    "failed checks",
]  # fmt: skip


def render(results: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    """The markdown report: totals, the fault matrix per backend and operation, load runs, failures."""
    trials = [r for r in results if r["kind"] == "trial"]
    loads = [r for r in results if r["kind"] == "load"]
    fuzz = [r for r in results if r["kind"] == "fuzz"]
    hostile = [r for r in results if r["kind"] == "hostile"]
    lines = [f"# {title}", "", *notes, "", "## Totals", ""]
    operations = len({r["operation"] for r in trials})
    faults = len({r["fault"] for r in trials})
    lines += _table(
        ["faults tried", "fault kinds", "operations", *COUNT_HEADER[1:], "load rows lost", "load rows duplicated",
         "inputs fuzzed", "fuzz crashes", "hostile cases failed"],
        [[len(trials), faults, operations, *_counts(trials)[1:],
          sum(r["rows_lost"] for r in loads), sum(r["rows_duplicated"] for r in loads),
          sum(r["inputs"] for r in fuzz), sum(r["crashes"] for r in fuzz), sum(not r["passed"] for r in hostile)]],
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
    if fuzz or hostile:
        lines += _hostile_input(fuzz, hostile)
    processes = [r for r in results if r["kind"] == "process"]
    webhook_loads = [r for r in results if r["kind"] == "webhook_load"]
    if processes or webhook_loads:
        lines += _process_faults(processes, webhook_loads)
    failed = [r for r in trials if _failed(r)]
    if failed:
        lines += ["", "## Failed trials", ""]
        for r in failed[:50]:
            first = r["problems"][0].splitlines()[0] if r["problems"] else r["outcome"]
            lines.append(f"- {r['backend']} {r['operation']}: {r['point']}: {first}")
    return "\n".join(lines) + "\n"


def _hostile_input(fuzz: list[dict[str, Any]], hostile: list[dict[str, Any]]) -> list[str]:
    """Inputs fuzzed per parser (summed over the tests that fuzz it), and the explicit hostile cases."""
    lines = ["", "## Hostile input", ""]
    if fuzz:
        lines += [
            "Hypothesis inputs per parser (structural mutations of the real fixtures). A crash is any exception "
            "outside the documented error tree.",
            "",
        ]
        columns = ("inputs", "ok", "rejected", "raised", "crashes")
        totals: dict[str, Counter[str]] = defaultdict(Counter)
        for r in fuzz:
            totals[r["parser"]].update({c: r[c] for c in columns})
        lines += _table(
            ["parser", "inputs fuzzed", "returned", "rows rejected", "raised (documented)", "crashes"],
            [[parser, *(t[c] for c in columns)] for parser, t in sorted(totals.items())],
        )
    if hostile:
        lines += ["", "| case | outcome | check |", "| --- | --- | --- |"]
        lines += [f"| {r['case']} | {r['outcome']} | {'ok' if r['passed'] else 'FAILED'} |" for r in hostile]
    return lines


def _process_faults(processes: list[dict[str, Any]], loads: list[dict[str, Any]]) -> list[str]:
    """Kills and restarts per scenario with their audits, and the webhook receiver's load runs."""
    lines = ["", "## Process kills and service restarts", ""]
    if processes:
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in processes:
            by[r["scenario"]].append(r)
        columns = ("trials", "changes", "rows", "rows_lost", "rows_duplicated", "applied_twice", "problems")
        lines += _table(
            ["scenario", "kills/restarts", "changes", "rows", "rows lost", "rows duplicated", "applied twice",
             "problems", "detail"],
            [[name, *(sum(r[c] for r in rs) for c in columns), "; ".join(sorted({r["detail"] for r in rs}))]
             for name, rs in sorted(by.items())],
        )  # fmt: skip
    if loads:
        lines += ["", "Webhook receiver under load (bench/webhooks_load.py, a local httpx client):", ""]
        lines += _table(
            ["webhooks", "concurrency", "accepted", "errors", "events", "applied once", "apply s", "p50 ms",
             "p99 ms", "webhooks/s"],
            [[r["webhooks"], r["concurrency"], r["accepted"], r["errors"], r["events"], r["applied"],
              f"{r['apply_seconds']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['per_second']:.0f}"]
             for r in loads],
        )  # fmt: skip
    return lines

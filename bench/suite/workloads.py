"""W1..W7 of issue 9: which jobs each workload runs, in which order, on which tables.

Peers take turns within every repetition (rotated each time), so a change in machine load hits them
alike; the report takes medians over repetitions. Tables: `blobs` (W1, W2, W4), `labels` (W3, W4), `w5`,
`w6` (+ its view) and `w7`, each in the peer's own directory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .inputs import BLOB
from .run_state import Run


def w1_ingest(run: Run) -> None:
    """W1: the blob table, ingested from scratch in every repetition; the last copy stays for W2 and W4."""
    for rep in range(run.plan.ingest_reps):
        for peer in run.order(rep):
            if rep:
                run.setup("W1", "blobs", peer, "drop", {"table": "blobs"})
            args = {"table": "blobs", "input": run.inputs.blobs(), "blob_columns": [BLOB]}
            run.job("W1", "blobs", peer, rep, "ingest", args)


def w2_random_access(run: Run) -> None:
    """W2: shuffled single-row and 256-row reads of the blob table, warm, then cold after evicting it."""
    base = {"table": "blobs", "indices": run.inputs.indices(), "batch": 256, "budget_s": run.plan.access_budget_s}
    cases = {
        "warm": {"modes": ["single", "batch"], "cold": False},
        "cold_single": {"modes": ["single"], "cold": True},
        "cold_batch": {"modes": ["batch"], "cold": True},
    }
    for rep in range(run.plan.access_reps):
        for peer in run.order(rep):
            for case, extra in cases.items():
                run.job("W2", case, peer, rep, "random_access", {**base, **extra})


def filters(rows: int) -> dict[str, dict[str, Any]]:
    """Two 1% filters: a key range (prunable by statistics) and a label + score predicate (not prunable)."""
    lo = rows // 2
    return {
        "id_range": {"kind": "id_range", "lo": lo, "hi": lo + rows // 100},
        "label_score": {"kind": "label_score", "label": "cat", "score": 0.95},  # 20% x 5%
    }


def w3_scan(run: Run) -> None:
    """W3: both filters over the 1M-row label table, through each engine's reader and through DuckDB."""
    for peer in run.peers:
        run.job("W3", "ingest", peer, 0, "ingest", {"table": "labels", "input": run.inputs.labels()})
    for rep in range(run.plan.scan_reps):
        for peer in run.order(rep):
            for name, spec in filters(run.inputs.sizes.label_rows).items():
                for via in ("native", "duckdb"):
                    run.job("W3", f"{name}:{via}", peer, rep, "scan", {"table": "labels", "filter": spec, "via": via})


def w4_upsert(run: Run) -> None:
    """W4: upsert 1% by key (half updates, half inserts) into the label table and the blob table."""
    s = run.inputs.sizes
    for rep in range(run.plan.upsert_reps):
        for peer in run.order(rep):
            for table, rows, blob_kb in (("labels", s.label_rows, 0), ("blobs", s.blob_rows, s.blob_kb)):
                change = run.inputs.change(table, rows, s.change_fraction, rep, blob_kb)
                args = {"table": table, **change}
                result = run.job("W4", table, peer, rep, "upsert", args, run.plan.upsert_timeout_s)
                if table == "labels" and "timeout" in result:
                    run.blocked[peer] = f"an upsert of 1% did not finish in {result['timeout']:.0f} s (W4)"


def w5_versions(run: Run) -> None:
    """W5: 20 commits of 0.1% each, then versions 0 and 10, a diff 10 -> 20 and the hot key's history."""
    args = {
        "table": "w5",
        "commits": run.inputs.commits(),
        "mid": run.inputs.sizes.commits // 2,
        "hot_key": run.inputs.hot_key,
        "repeat": 3,
        "budget_s": 10.0,
    }
    for peer in run.peers:
        if peer in run.blocked:
            run.note("W5", "versions", peer, {"unsupported": f"not run: {run.blocked[peer]}"})
            continue
        if run.setup("W5", "versions", peer, "ingest", {"table": "w5", "input": run.inputs.labels()}):
            run.job("W5", "versions", peer, 0, "versions", args)


def w6_views(run: Run) -> None:
    """W6: a feature view over the label table, refreshed after a 1% change, against a full recompute."""
    s = run.inputs.sizes
    changes = [run.inputs.change("w6", s.label_rows, s.change_fraction, r) for r in range(run.plan.view_rounds)]
    for peer in run.peers:
        if run.setup("W6", "view", peer, "ingest", {"table": "w6", "input": run.inputs.labels()}):
            run.job("W6", "view", peer, 0, "view", {"table": "w6", "view": "w6_view", "changes": changes})


def w7_concurrency(run: Run) -> None:
    """W7: 4 processes each upsert the same new keys and append their own, at once; then count the damage."""
    s = run.inputs.sizes
    shared = list(range(10_000_000, 10_000_000 + s.w7_shared_keys))
    for peer in run.peers:
        if not run.setup("W7", "concurrency", peer, "ingest", {"table": "w7", "input": run.inputs.w7_base()}):
            continue
        writers = [run.pool.spawn(peer) for _ in range(s.w7_writers)]
        try:
            # Start every process first (imports take seconds), then release them together.
            starting = [threading.Thread(target=w.start) for w in writers]
            for t in starting:
                t.start()
            for t in starting:
                t.join()
            start_at = time.time() + 1.0
            for i, w in enumerate(writers):
                args = {
                    "table": "w7",
                    "writer": i,
                    "shared_keys": shared,
                    "template": run.inputs.template(),
                    "rounds": s.w7_rounds,
                    "append_rows": s.w7_append_rows,
                    "append_base": 20_000_000 + i * 1_000_000,
                    "start_at": start_at,
                }
                w.submit("writer", run.root(peer), args)
            results = [w.result(run.plan.timeout_s) for w in writers]
        except RuntimeError as exc:
            results = [{"error": str(exc)}]
        finally:
            for w in writers:
                w.close()
        bad = next((r for r in results if "ok" not in r), None)
        if bad is not None:
            run.note("W7", "concurrency", peer, bad)
            continue
        acked = [k for r in results for k in r["ok"]["acked_appends"]]
        args = {"table": "w7", "shared_keys": shared, "acked_appends": acked, "base_rows": s.w7_base_rows}
        result = run.job("W7", "concurrency", peer, 0, "check", args)
        if "ok" in result:
            result["ok"]["retries"] = sum(r["ok"]["retries"] for r in results)
            result["ok"]["failures"] = sum(r["ok"]["failures"] for r in results)
            result["ok"]["errors"] = sorted({e for r in results for e in r["ok"]["errors"]})[:3]


WORKLOADS: dict[str, Callable[[Run], None]] = {
    "W1": w1_ingest,
    "W2": w2_random_access,
    "W3": w3_scan,
    "W4": w4_upsert,
    "W5": w5_versions,
    "W6": w6_views,
    "W7": w7_concurrency,
}


def run_all(run: Run, only: list[str]) -> None:
    """Run the chosen workloads in order (later ones use the tables earlier ones built)."""
    for name, fn in WORKLOADS.items():
        if name in only:
            started = time.perf_counter()
            print(f"{name} ...", flush=True)
            fn(run)
            run.clock(name, started)
            print(f"{name} done in {run.elapsed[name]:.0f} s", flush=True)

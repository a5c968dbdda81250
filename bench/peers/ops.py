"""The measured steps of each workload, run inside a worker against one engine's adapter.

Each op takes the adapter and the job's arguments (JSON) and returns JSON figures. Inputs are Arrow IPC
files written once by the orchestrator, so every engine (the Space venv included) reads the same rows.
An `Unsupported` raised by an adapter propagates to the worker, which reports it as such.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .base import KEY, Peer, features, retry
from .measure import drop_cache, probe, timed_calls


def load(path: str) -> pa.Table:
    """An input table read fully into memory (not memory-mapped: its pages must not count as engine RSS)."""
    with pa.OSFile(path) as f:
        return pa.ipc.open_file(f).read_all()


def _median_us(times: list[float], per: int = 1) -> float:
    return statistics.median(times) / per * 1e6 if times else float("nan")


def ingest(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W1 (and the setup of later workloads): create a table from an input file."""
    data = load(a["input"])
    with probe(peer.path(a["table"])) as fig:
        peer.create(a["table"], data, a.get("blob_columns", []))
    fig.extra["rows"] = data.num_rows
    fig.extra["input_mb"] = data.nbytes / (1 << 20)
    fig.extra["how"] = peer.describe("create")
    return fig.as_dict()


def random_access(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W2: rows by shuffled index, one at a time and in batches; warm, or cold after evicting the files."""
    indices: list[int] = load(a["indices"]).column("i").to_pylist()
    batch = int(a["batch"])
    cold = bool(a["cold"])
    if cold:
        peer.close()
        drop_cache(peer.path(a["table"]))
    with probe() as fig_open:
        reader = peer.reader(a["table"])
    out: dict[str, Any] = {
        "open_s": fig_open.seconds,
        "open_read_mb": fig_open.read_mb,  # an engine that reads ahead at open pays for cold reads here
        "how": peer.describe("random_access"),
    }
    try:
        for mode in a["modes"]:
            if mode == "single":
                args: list[Any] = indices
                fn: Callable[[Any], Any] = reader.one
                per = 1
            else:
                args = [indices[i : i + batch] for i in range(0, len(indices), batch)]
                fn, per = reader.many, batch
            if not cold:  # warm: one untimed pass fills the page cache and the engine's own caches
                timed_calls(fn, args, a["budget_s"])
            with probe() as fig:
                times = timed_calls(fn, args, a["budget_s"])
            out[f"{mode}_us_per_row"] = _median_us(times, per)
            if cold and times:  # what a cold start costs in all: an engine that reads ahead at open pays for it there
                out[f"{mode}_from_open_us_per_row"] = (fig_open.seconds + sum(times)) / (len(times) * per) * 1e6
            out[f"{mode}_rows_timed"] = len(times) * per
            out[f"{mode}_read_mb"] = fig.read_mb
            out[f"{mode}_peak_mb"] = fig.peak_mb
    finally:
        reader.close()
    return out


def scan(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W3: the filtered scan natively or through DuckDB; rows counted so results can be cross-checked."""
    run = peer.scan if a["via"] == "native" else peer.scan_duckdb
    with probe() as fig:
        rows = run(a["table"], a["filter"])
    fig.extra["rows"] = rows.num_rows
    fig.extra["how"] = peer.describe("scan" if a["via"] == "native" else "scan_duckdb")
    return fig.as_dict()


def upsert(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W4: upsert a change set (half updates, half inserts) as one commit."""
    rows = pa.concat_tables([load(a["updates"]), load(a["inserts"])])
    with probe(peer.path(a["table"])) as fig:
        peer.upsert(a["table"], rows)
    fig.extra["rows"] = rows.num_rows
    fig.extra["how"] = peer.describe("upsert")
    return fig.as_dict()


def versions(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W5: N small commits, then read two old versions, a row-level diff and one key's history."""
    table = a["table"]
    seen = [peer.version(table)]
    commit_s = []
    for path in a["commits"]:
        rows = load(path)
        with probe() as fig:
            peer.upsert(table, rows)
        commit_s.append(fig.seconds)
        seen.append(peer.version(table))
    out: dict[str, Any] = {"commit_s": statistics.median(commit_s), "commits": len(commit_s)}
    steps: dict[str, Callable[[], pa.Table]] = {
        "read_v0": lambda: peer.read_version(table, seen[0]),
        "read_v10": lambda: peer.read_version(table, seen[a["mid"]]),
        "diff": lambda: peer.diff(table, seen[a["mid"]], seen[-1]),
        "history": lambda: peer.history(table, a["hot_key"], seen),
    }
    for step, fn in steps.items():
        times, peaks, rows = [], [], 0
        for _ in range(a["repeat"]):
            with probe() as fig:
                rows = fn().num_rows
            times.append(fig.seconds)
            peaks.append(fig.peak_mb)
            if sum(times) > a["budget_s"]:  # an emulation taking many seconds is measured fewer times
                break
        out[f"{step}_s"] = statistics.median(times)
        out[f"{step}_first_s"] = times[0]  # what a read costs before any cache of the engine's holds it
        out[f"{step}_peak_mb"] = max(peaks)
        out[f"{step}_rows"] = rows
        out[f"{step}_how"] = peer.describe(step.split("_")[0])
    return out


def view(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W6: build the view, then per round: change 1% of the source, refresh incrementally, recompute fully."""
    source, target = a["table"], a["view"]
    peer.view_prepare()
    with probe() as fig:
        peer.view_create(source, target)
    out: dict[str, Any] = {"create_s": fig.seconds, "how": peer.describe("view")}
    incr, full, incr_peak, full_peak, recomputed = [], [], [], [], 0
    correct = True
    for change in a["changes"]:
        peer.apply_change(source, load(change["updates"]), load(change["inserts"]))
        with probe() as fig:
            stats = peer.view_refresh(source, target)
        incr.append(fig.seconds)
        incr_peak.append(fig.peak_mb)
        recomputed = stats.get("rows_recomputed", 0)
        correct = correct and _view_matches(peer, source, target)
        with probe() as fig:
            peer.view_recompute(source, target)
        full.append(fig.seconds)
        full_peak.append(fig.peak_mb)
    out.update(
        incremental_s=statistics.median(incr),
        full_s=statistics.median(full),
        incremental_peak_mb=max(incr_peak),
        full_peak_mb=max(full_peak),
        rows_recomputed=recomputed,
        correct=correct,
    )
    return out


def _view_matches(peer: Peer, source: str, target: str) -> bool:
    """The incrementally refreshed view equals the UDF applied to the whole source."""
    want = features(peer.read_all(source).combine_chunks()).sort_by(KEY)
    # Combined first: a view read as thousands of small chunks (Space's Ray blocks) sorts very slowly.
    got = peer.view_read(target).select(want.column_names).combine_chunks().sort_by(KEY)
    return bool(got.cast(want.schema).equals(want))


def writer(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W7, one of the concurrent processes: rounds of an upsert of shared keys and an append of own keys."""
    table, me = a["table"], a["writer"]
    shared = pa.array(a["shared_keys"], pa.int64())
    template = load(a["template"])
    acked: list[int] = []
    errors: list[str] = []
    retries = 0
    time.sleep(max(0.0, a["start_at"] - time.time()))  # all writers begin together
    for r in range(a["rounds"]):
        up = _rows(template, shared, me, r)
        own = pa.array(range(a["append_base"] + r * a["append_rows"], a["append_base"] + (r + 1) * a["append_rows"]))
        app = _rows(template, own.cast(pa.int64()), me, r)
        for fn, keys in ((lambda t=up: peer.upsert(table, t), None), (lambda t=app: peer.append(table, t), own)):
            try:
                retries += retry(fn, peer.conflict_errors)
                if keys is not None:
                    acked.extend(keys.to_pylist())
            except Exception as exc:  # a write the engine refused for good: counted, not fatal to the run
                errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
    return {"acked_appends": acked, "retries": retries, "failures": len(errors), "errors": sorted(set(errors))[:3]}


def _rows(template: pa.Table, keys: pa.Array, writer_id: int, round_no: int) -> pa.Table:
    """Rows with the given keys, labelled by who wrote them in which round."""
    rows = template.slice(0, len(keys)).set_column(0, KEY, keys)
    i = rows.schema.get_field_index("annotator")
    return rows.set_column(i, "annotator", pa.array([f"w{writer_id}r{round_no}"] * len(keys)))


def check(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """W7 after the writers: duplicate keys, acknowledged appends that are missing, and the row count."""
    rows = peer.read_all(a["table"])
    keys = rows.column(KEY)
    distinct = pc.count_distinct(keys).as_py()
    acked = set(a["acked_appends"])
    present = set(keys.to_pylist())
    shared = pa.array(a["shared_keys"], pa.int64())
    shared_rows = rows.filter(pc.is_in(keys, value_set=shared)).num_rows
    return {
        "rows": rows.num_rows,
        "duplicates": rows.num_rows - distinct,
        "shared_rows": shared_rows,
        "lost_appends": len(acked - present),
        "acked_appends": len(acked),
        "expected_rows": a["base_rows"] + len(a["shared_keys"]) + len(acked),
        "how": peer.describe("concurrency"),
    }


def drop(peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
    """Free the disk an earlier repetition's table used."""
    peer.drop(a["table"])
    return {}


OPS: dict[str, Callable[[Peer, dict[str, Any]], dict[str, Any]]] = {
    "ingest": ingest,
    "random_access": random_access,
    "scan": scan,
    "upsert": upsert,
    "versions": versions,
    "view": view,
    "writer": writer,
    "check": check,
    "drop": drop,
}

"""Version-control benchmark: diff over 100 commits, per-key history, compaction.

Run: python bench/versions.py [--rows 1000000 --commits 100]. Each dataset gets `--commits` upserts of 0.1%
of its rows; one key is edited in every other commit so history() has a long trail. Two relabel patterns:
`random` keys spread over the whole table (pre-images sit in every row group), and `clustered` runs of
consecutive keys (a labeling batch of neighbouring tasks), which is how labeling projects usually change.
Each pattern runs with and without `WriteOptions(log_row_images=True)`: with it, commits copy the old rows
into their change logs and diff() reads only change logs and the commits' own small files.

A last table diffs across many small commits (a dataset fed by webhooks): with the change-log roll-ups
that every 10th, 100th and 1,000th commit stores (storage/rollups.py), and with each commit's own log.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import label_table, show, timed
from storage import (
    Catalog,
    WriteOptions,
    datafiles,
    lineage,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--small-commits", type=int, default=1000, help="commits of 5 rows for the last table")
    args = parser.parse_args()
    for pattern in ("random", "clustered"):
        for preimages in (True, False):
            run(args.rows, args.commits, pattern, preimages)
    run_small_commits(args.rows // 10, args.small_commits)


def alternating(*fns: Callable[[], Any], repeat: int = 7, warmup: int = 2) -> list[tuple[float, float, Any]]:
    """Per function: median wall and process CPU seconds over `repeat` runs taken in turn with the others
    (so all see the same page cache and machine load: this machine's scan time alone varies 2x from run
    to run), and its last result.

    `warmup` rounds go untimed first: right after a dataset is built, its first full scans here took up to
    twice as long as the later ones (196, 200, 147, 117, 109, 98, 91 ms), and diffs alike. What a reader's
    first call costs is measured on its own (fresh_diff()).
    """
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None] * len(fns)
    for _ in range(warmup):
        for fn in fns:
            fn()
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            c0, t0 = time.process_time(), time.perf_counter()
            results[i] = fn()
            walls[i].append(time.perf_counter() - t0)
            cpus[i].append(time.process_time() - c0)
    return [(float(np.median(w)), float(np.median(c)), r) for w, c, r in zip(walls, cpus, results, strict=True)]


def pick_keys(rng: np.random.Generator, n: int, k: int, pattern: str) -> np.ndarray:
    """`k` distinct keys below `n`: uniformly random, or one run of consecutive keys."""
    if pattern == "random":
        return rng.choice(n, k, replace=False)
    start = int(rng.integers(0, n - k))
    return np.arange(start, start + k)


def run(n: int, commits: int, pattern: str, preimages: bool) -> None:
    """Build the dataset for one relabel pattern and print its table."""
    cat = Catalog(os.path.join(tempfile.mkdtemp(prefix="lh-bench-"), "lake"))
    options = WriteOptions(max_rows_per_file=n // 10, log_row_images=preimages)
    ds = cat.create_dataset("labels", label_table(1).schema, ["id"], options=options)
    first = ds.append(label_table(n))
    rng = np.random.default_rng(3)
    hot_key = n // 3
    k = max(1, n // 1000)
    commit_times: list[float] = []
    for c in range(commits):
        keys = pick_keys(rng, n, k, pattern)
        if c % 2 == 0:
            keys[0] = hot_key
        keys = np.unique(keys)
        batch = label_table(len(keys), seed=100 + c).set_column(0, "id", pa.array(keys, pa.int64()))
        t0 = time.perf_counter()
        ds.upsert(batch, message=f"relabel batch {c}")
        commit_times.append(time.perf_counter() - t0)
    last = ds.snapshot()
    edits = 1 + (commits + 1) // 2

    t_fresh = fresh_diff(cat.uri, first.id, last.id)
    (t_full, cpu_full, full), (t_diff, cpu_diff, diff) = alternating(
        lambda: ds.read_all(), lambda: ds.diff(first.id, last.id)
    )
    opened: list[str] = []
    real = datafiles.read_positions

    def counting(store, layout, path, positions, columns):  # type: ignore[no-untyped-def]
        opened.append(path)
        return real(store, layout, path, positions, columns)

    with mock.patch("storage.context.read_positions", counting):
        t_hist, hist = timed(lambda: ds.history(hot_key))
    files_before = ds.manifest().num_rows
    t_compact, _ = timed(lambda: ds.compact())
    files_after = ds.manifest().num_rows
    (t_read_before, _cpu, _before), (t_read_after, _cpu, after) = alternating(
        lambda: ds.read_all(version=last.id), ds.read_all, repeat=5
    )
    assert after.num_rows == full.num_rows
    assert hist.num_rows == edits, (hist.num_rows, edits)
    show(
        f"{n:,} rows after {commits} commits of 0.1% upserts ({pattern} keys, log_row_images={preimages})",
        ["measure", "value", "note"],
        [
            ["upsert commit s", float(np.median(commit_times)), "median of the relabel commits"],
            ["full scan s", t_full, "read_all() at head"],
            [
                "diff first->last s",
                t_diff,
                f"{diff.num_rows:,} change rows; {t_diff / t_full:.1%} of a full scan's wall time (target <10%)",
            ],
            ["diff in a new process s", t_fresh, "the first diff of a reader that has mapped no change log yet"],
            ["full scan CPU s", cpu_full, "both cores: the scan decodes files in parallel"],
            ["diff CPU s", cpu_diff, f"{cpu_diff / cpu_full:.1%} of the full scan's CPU time"],
            [
                "history(key) s",
                t_hist,
                f"{hist.num_rows} states; data files opened: {len(set(opened))} of {files_before}",
            ],
            ["compact() s", t_compact, f"files {files_before} -> {files_after}"],
            [
                "read after compaction s",
                t_read_after,
                f"{t_read_after / t_read_before:.2f}x the read of the version before it ({t_read_before:.3f} s)",
            ],
        ],
    )


_FRESH = """
import sys, time
from storage import Catalog
ds = Catalog(sys.argv[1]).dataset("labels")
t0 = time.perf_counter()
ds.diff(int(sys.argv[2]), int(sys.argv[3]))
print(time.perf_counter() - t0)
"""


def fresh_diff(root: str, start: int, end: int) -> float:
    """Seconds of one diff in a new Python process: no change log mapped or cached yet (the page cache is
    warm, as for any reader of a table just written)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _FRESH, root, str(start), str(end)], cwd=repo, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def run_small_commits(n: int, commits: int, per_commit: int = 5) -> None:
    """Diffs over the last 10, 100, ... of `commits` upserts of `per_commit` random keys, with and without
    roll-ups, and the number of change logs each composes."""
    cat = Catalog(os.path.join(tempfile.mkdtemp(prefix="lh-bench-"), "lake"))
    ds = cat.create_dataset("labels", label_table(1).schema, ["id"], options=WriteOptions(log_row_images=True))
    ds.append(label_table(n))
    rng = np.random.default_rng(5)
    for c in range(commits):
        keys = np.unique(rng.choice(n, per_commit, replace=False))
        ds.upsert(label_table(len(keys), seed=c).set_column(0, "id", pa.array(keys, pa.int64())))
    ctx = ds._ctx  # the bench reads the engine's lineage to count the logs a diff composes
    head = ds.snapshot().id
    spans = [s for s in (10, 100, 1000, 10_000) if s <= commits]
    plain = functools.partial(lineage.logs_along, use_rollups=False)
    rows = []
    for span in spans:
        path = lineage.first_parent_path(ctx, ctx.log.get(head - span), ctx.log.get(head)) or []

        def own_logs(start: int = head - span) -> Any:
            with mock.patch("storage.changeset.logs_along", plain):
                return ds.diff(start, head)

        (t_rolled, _cpu, diff), (t_plain, _cpu, same) = alternating(
            lambda: ds.diff(head - span, head),  # noqa: B023
            own_logs,
            repeat=5,
        )
        assert diff.num_rows == same.num_rows
        logs = f"{len(lineage.logs_along(path))} / {len(plain(path))}"
        rows.append([f"{span:,}", f"{diff.num_rows:,}", logs, t_rolled, t_plain, f"{t_plain / t_rolled:.1f}x"])
    show(
        f"diff over the last N of {commits:,} commits of {per_commit} upserted rows ({n:,}-row table, row images)",
        ["N commits", "change rows", "logs read (roll-ups / own logs)", "roll-ups s", "own logs s", "speed-up"],
        rows,
    )


if __name__ == "__main__":
    main()

"""Profile Labelhouse on the workloads where bench/run.py shows it losing: where does the time go?

Run: python bench/profile_labelhouse.py [--rows 1000000] [--ops scan,commit,...] [--tree]
Builds the suite's tables in a temp catalog, then runs each operation under cProfile and prints the
functions with the most time (own time, then cumulative time inside storage/), as file:line. With --tree
it prints pyinstrument's call tree instead (pip install pyinstrument). Machines here are shared: profile
proportions hold up under load, absolute times do not.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import label_table
from bench.peers.base import VIEW_SCHEMA
from bench.suite.inputs import change_set, with_blobs
from storage import Catalog

FEATURES = "bench.peers.base:features"


def build(root: str, rows: int, blob_rows: int) -> dict[str, Callable[[], Any]]:
    """Tables as the suite builds them, and the operations to profile on them."""
    cat = Catalog(root)
    labels = label_table(rows)
    ds = cat.create_dataset("labels", labels.schema, ["id"])
    ds.append(labels)
    blobs_table = with_blobs(label_table(blob_rows), 50 * 1024, seed=1)
    blobs = cat.create_dataset("blobs", blobs_table.schema, ["id"], record_fields=["image"])
    blobs.append(blobs_table)
    commits = []
    for c in range(20):
        up, ins = change_set(rows, max(10, rows // 1000), rows + c * rows, seed=300 + c)
        commits.append(ds.upsert(pa.concat_tables([up, ins])).id)
    mv = cat.materialize("view", ds.map_batches(FEATURES, output_schema=VIEW_SCHEMA))
    rounds = iter(range(1, 1000))

    def change() -> pa.Table:
        up, ins = change_set(rows, rows // 100, 10 * rows + next(rounds) * rows, seed=7)
        return pa.concat_tables([up, ins])

    def refresh_after_change() -> Any:
        ds.upsert(change())
        return mv.refresh()

    ra = blobs.random_access()
    order = np.random.default_rng(2).permutation(blob_rows)[:2000].tolist()
    flt = (pc.field("label") == "cat") & (pc.field("score") > 0.95)
    return {
        "scan": lambda: ds.read_all(filter=flt),
        "sql": lambda: ds.sql("SELECT * FROM labels WHERE label = 'cat' AND score > 0.95"),
        "upsert": lambda: ds.upsert(change()),
        "commit": lambda: ds.upsert(pa.concat_tables(change_set(rows, rows // 1000, 20 * rows, seed=9))),
        "read_version": lambda: ds.read_all(version=commits[9]),
        "diff": lambda: ds.diff(commits[9], commits[-1]),
        "history": lambda: ds.history(rows // 3),
        "view_incremental": refresh_after_change,
        "view_full": lambda: mv.refresh(full=True),
        "random_single": lambda: [ra[i] for i in order],
        "random_batch": lambda: [ra.__getitems__(order[i : i + 256]) for i in range(0, len(order), 256)],
    }


def report(name: str, prof: cProfile.Profile, seconds: float, top: int) -> None:
    """The top functions by own time, then storage/ functions by cumulative time, as file:line."""
    print(f"\n=== {name}: {seconds * 1e3:.0f} ms per call ===")
    for sort, only_storage in (("tottime", False), ("cumulative", True)):
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out).sort_stats(sort)
        stats.print_stats(r"storage/" if only_storage else "", top)
        body = out.getvalue().split("ncalls", 1)[-1]
        print(f"--- by {sort}{' (storage/ only)' if only_storage else ''} ---\nncalls{body.rstrip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--blob-rows", type=int, default=20_000)
    parser.add_argument("--ops", default="scan,sql,upsert,commit,read_version,diff,history,view_incremental,view_full")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--tree", action="store_true", help="pyinstrument call trees instead of cProfile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lh-profile-") as root:
        profile(build(root, args.rows, args.blob_rows), args)


def profile(ops: dict[str, Callable[[], Any]], args: argparse.Namespace) -> None:
    """Run each asked-for operation once to warm up, then `repeat` times under the profiler."""
    for name in args.ops.split(","):
        fn = ops[name]
        fn()  # warm: imports, caches, page cache
        if args.tree:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            t0 = time.perf_counter()
            with profiler:
                for _ in range(args.repeat):
                    fn()
            print(f"\n=== {name}: {(time.perf_counter() - t0) / args.repeat * 1e3:.0f} ms per call ===")
            print(profiler.output_text(unicode=False, color=False))
            continue
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(args.repeat):
            fn()
        prof.disable()
        report(name, prof, (time.perf_counter() - t0) / args.repeat, args.top)


if __name__ == "__main__":
    main()

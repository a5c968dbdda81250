"""Views and vector indexes: full materialization vs incremental refresh after a 1% change, locally and on
a local 2-worker Ray; index refresh vs full rebuild; recall@10 and queries/s of the index.

Run: python bench/views.py [--rows 200000] [--cost sleep|cpu] [--no-ray]. The view function costs ~1 ms
per row (bench/_view_udfs.py: time.sleep per batch by default, a busy loop with --cost cpu). Prints
ratios; machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench._common import label_table, show, timed
from bench._view_udfs import COST_ENV, DIM, EMBEDDED, slow_embed
from storage import Catalog, Dataset, MaterializedView, RefreshStats, VectorIndex

TARGET = 0.05  # an incremental refresh after a 1% change should cost under 5% of a full materialization


def one_percent_change(ds: Dataset, n: int, rng: np.random.Generator) -> str:
    """Update 0.6%, delete 0.2% and insert 0.2% of the rows (in three commits); says what it did."""
    updates, deletes, inserts = n * 6 // 1000, n * 2 // 1000, n * 2 // 1000
    picked = rng.choice(n, updates + deletes, replace=False)
    changed = label_table(n, seed=1).take(pa.array(np.sort(picked[:updates])))
    ds.upsert(changed)
    ds.delete(keys=picked[updates:].tolist())
    ds.append(label_table(inserts, start=10 * n, seed=2))
    return f"{updates:,} updated, {deletes:,} deleted, {inserts:,} inserted"


def refresh_rows(name: str, full_s: float, stats: RefreshStats) -> list[Any]:
    ratio = stats.seconds / full_s
    verdict = "ok" if ratio < TARGET else "MISSED"
    return [name, full_s, stats.seconds, f"{ratio:.1%}", verdict, stats.keys_recomputed]


def start_ray() -> float:
    """A local Ray with 2 CPUs whose workers can import bench._view_udfs, its two workers started and warm
    (storage imported), so a timed refresh does not include process start-up; returns the seconds it took."""
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": REPO, COST_ENV: os.environ.get(COST_ENV, "sleep")}},
    )
    warm: Any = ray.remote(_warm_worker)
    ray.get([warm.remote() for _ in range(2)])
    return time.perf_counter() - started


def _warm_worker() -> None:
    import storage  # noqa: F401  (what a refresh task imports first)

    time.sleep(1.0)  # hold the worker so the second task starts the other one


def index_quality(idx: VectorIndex, queries: np.ndarray) -> list[float]:
    """recall@10 of ANN search against exact search; queries/s of each through idx.search, and of the bare
    usearch ANN search (the difference is what idx.search adds: log, key table, join back to keys)."""
    t0 = time.perf_counter()
    exact = [set(idx.search(q, k=10, exact=True).column("id").to_pylist()) for q in queries]
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx = [set(idx.search(q, k=10).column("id").to_pylist()) for q in queries]
    t_ann = time.perf_counter() - t0
    recall = float(np.mean([len(a & e) / max(1, len(e)) for a, e in zip(approx, exact, strict=True)]))
    bare = idx._load_index(idx._entries()[-1]["index"])  # private, for this diagnosis only
    t0 = time.perf_counter()
    for q in queries:
        bare.search(q, 10)
    t_bare = time.perf_counter() - t0
    return [recall, len(queries) / t_ann, len(queries) / t_exact, len(queries) / t_bare]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cost", choices=["sleep", "cpu"], default="sleep", help="how the ~1 ms per row is spent")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray engine rows")
    args = parser.parse_args()
    os.environ[COST_ENV] = args.cost
    n = args.rows
    rng = np.random.default_rng(0)
    cat = Catalog(os.path.join(tempfile.mkdtemp(prefix="lh-bench-views-"), "lake"))
    ds = cat.create_dataset("labels", label_table(1).schema, ["id"])
    ds.append(label_table(n))
    view = ds.map_batches(slow_embed, EMBEDDED, version="1")

    t_full, local = timed(lambda: cat.materialize("emb_local", view))
    t_index_build, idx = timed(lambda: cat.create_vector_index("emb_knn", local, "embedding", metric="cos"))
    engines: list[tuple[str, MaterializedView, float, str]] = [("local", local, t_full, "local")]
    ray_note = "skipped (--no-ray)"
    if not args.no_ray:
        ray_init = start_ray()
        t_full_ray, on_ray = timed(lambda: cat.materialize("emb_ray", view, engine="ray"))
        engines.append(("ray, 2 workers", on_ray, t_full_ray, "ray"))
        ray_note = f"starting Ray and its workers took {ray_init:.1f} s (not counted)"

    change = one_percent_change(ds, n, rng)
    rows = [refresh_rows(name, full_s, mv.refresh(engine=engine)) for name, mv, full_s, engine in engines]
    if len(engines) > 1:  # both engines must produce the same view
        tables = [mv.read_all().sort_by("id") for _, mv, _, _ in engines]
        assert tables[0].equals(tables[1]), "ray and local views differ"
    show(
        f"View refresh: {n:,} rows, UDF ~1 ms/row ({args.cost}); change: {change}; {ray_note}",
        ["engine", "full materialize s", "incremental refresh s", "refresh / full", f"< {TARGET:.0%}", "keys redone"],
        rows,
    )

    inc = idx.refresh()
    rebuild = idx.refresh(full=True)
    share = f"{inc.seconds / rebuild.seconds:.1%}"
    assert rebuild.full and rebuild.size == inc.size
    show(
        f"Vector index ({DIM}-d, cos, usearch HNSW) after the same change",
        ["operation", "seconds", "vectors added", "vectors removed", "index size", "vs full rebuild"],
        [
            ["first build (create_vector_index)", t_index_build, n, 0, n, "-"],
            ["incremental refresh", inc.seconds, inc.added, inc.removed, inc.size, share],
            ["full rebuild (refresh(full=True))", rebuild.seconds, rebuild.added, 0, rebuild.size, "100.0%"],
        ],
    )

    vectors = local.read_all(columns=["embedding"]).column("embedding").to_pylist()
    picks = rng.choice(len(vectors), args.queries, replace=False)
    queries = np.array([vectors[i] for i in picks], np.float32) + rng.normal(0, 0.05, (args.queries, DIM))
    show(
        f"Search quality and speed: {args.queries} queries, k=10, one thread",
        ["recall@10 (ANN vs exact)", "ANN queries/s", "exact queries/s", "bare usearch ANN queries/s"],
        [index_quality(idx, queries.astype(np.float32))],
    )
    if not args.no_ray:
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()

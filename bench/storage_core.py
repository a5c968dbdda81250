"""Storage core benchmark: ingest, pruned filtered scan, a 1% upsert and reads after it, against plain pyarrow.

Run: python bench/storage_core.py [--rows 1000000]. Prints ratios; machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import dir_bytes, label_table, show, timed
from storage import Catalog, WriteOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20, help="data files the ingest is split into")
    args = parser.parse_args()
    n = args.rows
    table = label_table(n)
    root = tempfile.mkdtemp(prefix="lh-bench-")
    cat = Catalog(os.path.join(root, "lake"))
    opts = WriteOptions(max_rows_per_file=n // args.files)
    ds = cat.create_dataset("labels", table.schema, ["id"], options=opts)
    plain = os.path.join(root, "plain.parquet")

    t_lh, _ = timed(lambda: ds.append(table))
    t_pq, _ = timed(lambda: pq.write_table(table, plain, compression="zstd", row_group_size=64 * 1024))
    ds_bytes = sum(ds.manifest().column("bytes").to_pylist())
    pq_bytes = os.path.getsize(plain)
    show(
        f"Ingest {n:,} rows x 10 columns",
        ["engine", "seconds", "rows/s", "bytes", "vs parquet (time)"],
        [
            ["labelhouse append", t_lh, int(n / t_lh), ds_bytes, f"{t_lh / t_pq:.2f}x"],
            ["pyarrow.parquet write", t_pq, int(n / t_pq), pq_bytes, "1.00x"],
        ],
    )

    lo = n // 2
    flt = (pc.field("id") >= lo) & (pc.field("id") < lo + n // 100)
    manifest = ds.manifest()
    files_total = manifest.num_rows
    files_read = len(ds.files(flt))
    t_filtered, got = timed(lambda: ds.read_all(filter=flt), repeat=5)
    t_full, _ = timed(lambda: ds.read_all(), repeat=3)
    t_pq_filtered, _ = timed(lambda: pq.read_table(plain, filters=flt), repeat=5)
    t_pq_full, _ = timed(lambda: pq.read_table(plain), repeat=3)
    assert got.num_rows == n // 100, got.num_rows
    show(
        "Filtered scan, 1% selectivity on id (data files pruned by manifest min/max)",
        ["engine", "filtered s", "full scan s", "filtered/full", "files read"],
        [
            [
                "labelhouse",
                t_filtered,
                t_full,
                f"{t_filtered / t_full:.3f}",
                f"{files_read}/{files_total} ({files_read / files_total:.0%})",
            ],
            [
                "pyarrow.parquet (1 file, row-group stats)",
                t_pq_filtered,
                t_pq_full,
                f"{t_pq_filtered / t_pq_full:.3f}",
                "1/1",
            ],
        ],
    )

    rng = np.random.default_rng(1)
    k = n // 100
    keys = np.concatenate([rng.choice(n, k // 2, replace=False), np.arange(n, n + k - k // 2)])
    changed = label_table(k, seed=7).set_column(0, "id", pa.array(keys, pa.int64()))
    before = dir_bytes(os.path.join(root, "lake"))
    t_up, snap_up = timed(lambda: ds.upsert(changed))
    written = dir_bytes(os.path.join(root, "lake")) - before

    def rewrite() -> int:
        old = pq.read_table(plain)
        kept = old.filter(pc.invert(pc.is_in(old.column("id"), value_set=changed.column("id"))))
        pq.write_table(pa.concat_tables([kept, changed]), plain, compression="zstd", row_group_size=64 * 1024)
        return os.path.getsize(plain)

    t_rw, rw_bytes = timed(rewrite)
    show(
        "Upsert 1% by key (half updates, half inserts)",
        ["engine", "seconds", "bytes written", "% of table bytes", "time vs parquet"],
        [
            ["labelhouse upsert (deletion vectors)", t_up, written, f"{written / ds_bytes:.2%}", f"{t_up / t_rw:.2f}x"],
            ["pyarrow.parquet rewrite", t_rw, rw_bytes, f"{rw_bytes / pq_bytes:.2%}", "1.00x"],
        ],
    )
    # Whole-version and non-prunable filtered reads now that deletion vectors exist, against readers of the
    # same data files (pyarrow.dataset, which ignores the deletions) and of the plain file (pq.read_table).
    paths = [os.path.join(root, "lake", "labels", p) for p in ds.manifest().column("path").to_pylist()]
    spread = (pc.field("label") == "cat") & (pc.field("score") < 0.05)  # ~1% of rows, in every row group
    cases = {
        "labelhouse ds.read_all()": lambda f: ds.read_all(filter=f),
        "pyarrow.dataset (same files, no deletions)": lambda f: pads.dataset(paths).to_table(table.schema.names, f),
        "pyarrow.parquet (plain file)": lambda f: pq.read_table(plain, filters=f),
    }
    reads = {name: [timed(partial(fn, f), repeat=5)[0] for f in (None, spread)] for name, fn in cases.items()}
    lh_full, lh_spread = reads["labelhouse ds.read_all()"]
    show(
        "Reads after the upsert (deletion vectors in most files)",
        ["reader", "full s", "LH / this", "label & score filter s", "LH / this"],
        [[name, full, f"{lh_full / full:.2f}x", flt, f"{lh_spread / flt:.2f}x"] for name, (full, flt) in reads.items()],
    )

    summary = snap_up.summary
    assert summary["rows_updated"] == k // 2 and summary["rows_inserted"] == k - k // 2, summary
    assert ds.count() == n + k - k // 2
    print(
        f"targets: pruning reads {files_read / files_total:.0%} of files (<10%); upsert writes "
        f"{written / ds_bytes:.2%} of table bytes (<5%)"
    )


if __name__ == "__main__":
    main()

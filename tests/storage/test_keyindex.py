"""Key indexes locate exactly the live rows a filtered scan finds, for every indexed key type."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from storage import Catalog, WriteOptions, keyindex, scan

TYPES = [pa.int64(), pa.int32(), pa.uint16(), pa.timestamp("us"), pa.date32()]


def _keys(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    # Arrow casts int64 to date32 only through int32.
    return pa.array(values.astype(np.int32 if typ == pa.date32() else np.int64)).cast(typ)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(scan.FILE_COLUMN, "ascending"), ("_lh_pos", "ascending")])


@pytest.mark.parametrize("typ", TYPES, ids=str)
def test_index_finds_what_a_scan_finds(catalog: Catalog, typ: pa.DataType) -> None:
    rng = np.random.default_rng(7)
    schema = pa.schema([pa.field("k", typ), pa.field("v", pa.int64())])
    ds = catalog.create_dataset("t", schema, ["k"], options=WriteOptions(max_rows_per_file=700))
    ids = rng.permutation(3000)  # unsorted files need the argsort order
    ds.append(pa.table({"k": _keys(ids, typ), "v": ids}))
    for c in range(4):
        changed = rng.choice(3600, 200, replace=False)
        ds.upsert(pa.table({"k": _keys(changed, typ), "v": changed * 0 + c}))
        ds.delete(keys=pa.table({"k": _keys(rng.choice(3600, 40, replace=False), typ)}))
    ctx = ds._ctx
    snap = ctx.files(ctx.log.branch_head("main"))
    wanted = pa.table({"k": _keys(np.concatenate([rng.choice(4000, 600), [5, 5]]), typ)})
    for fresh in (False, True):  # indexes remembered at write, then built from the files
        if fresh:
            keyindex._CACHE = keyindex.new_cache(keyindex.MAX_BYTES)
        found = keyindex.locate(snap, wanted)
        assert found.schema == scan.locate(snap, wanted).schema
        assert _sorted(found).equals(_sorted(scan.locate(snap, wanted)))
        assert found.num_rows > 0


def test_tiny_budget_still_locates(catalog: Catalog) -> None:
    ds = catalog.create_dataset("t", pa.schema([pa.field("k", pa.int64())]), ["k"])
    ds.append(pa.table({"k": pa.array(np.arange(1000))}))
    ds.upsert(pa.table({"k": pa.array([3, 2000])}))
    saved = keyindex._CACHE
    keyindex._CACHE = keyindex.new_cache(16)  # nothing fits: every lookup reads the file
    try:
        snap = ds._ctx.files(ds._ctx.log.branch_head("main"))
        found = keyindex.locate(snap, pa.table({"k": pa.array([3, 4, 2000, 5000])}))
        assert sorted(found.column("k").to_pylist()) == [3, 4, 2000]
    finally:
        keyindex._CACHE = saved


@pytest.mark.parametrize("runs", [1, 3, keyindex.MAX_RUNS, keyindex.MAX_RUNS + 1, 40])
def test_files_of_ascending_runs_are_indexed_as_runs_or_sorted(catalog: Catalog, runs: int) -> None:
    """A replace writes a file in a few ascending key runs (larger than SORT_ON_WRITE): it is indexed at write
    time as those runs; past MAX_RUNS runs it is sorted when first looked up. Either way it finds what a scan does."""
    rng = np.random.default_rng(runs)
    n = keyindex.SORT_ON_WRITE + 5_000
    ds = catalog.create_dataset("t", pa.schema([pa.field("k", pa.int64()), pa.field("v", pa.int64())]), ["k"])
    keys = np.concatenate([np.sort(part) for part in np.array_split(rng.permutation(3 * n)[:n], runs)])
    ds.replace(pa.table({"k": keys, "v": np.arange(n)}))
    ctx = ds._ctx
    head = ctx.log.branch_head("main")
    assert head is not None
    snap = ctx.files(head)
    (path,) = snap.manifest.column("path").to_pylist()
    remembered = keyindex._CACHE.get((ctx.store.uri, path))
    if runs <= keyindex.MAX_RUNS:
        assert remembered is not None and remembered.order is None and len(remembered.starts) == runs
    else:
        assert remembered is None  # too many runs to index without a sort, and too many rows to sort on write
    wanted = pa.table({"k": pa.array(np.concatenate([rng.choice(keys, 500), rng.choice(3 * n, 500)]))})
    for fresh in (False, True):
        if fresh:
            keyindex._CACHE = keyindex.new_cache(keyindex.MAX_BYTES)
        found = keyindex.locate(snap, wanted)
        assert _sorted(found).equals(_sorted(scan.locate(snap, wanted)))
        assert found.num_rows >= 400
    built = keyindex._CACHE.get((ctx.store.uri, path))
    assert built is not None and (built.order is None) == (runs <= keyindex.MAX_RUNS)


def test_hits_match_a_brute_force_search_even_with_repeated_keys() -> None:
    """Every (wanted key, row) pair of a file's keys, sorted or in runs, repeated keys (a damaged file) included."""
    rng = np.random.default_rng(11)
    for trial in range(300):
        keys = rng.integers(0, 30, rng.integers(0, 60))
        if trial % 3 == 0:
            keys = np.sort(keys)
        index = keyindex._runs(keys) or keyindex._sorted(keys)
        wanted = np.unique(rng.integers(-2, 33, rng.integers(0, 20)))
        which, rows = keyindex._hits(index, wanted)
        expected = sorted((int(k), i) for i, k in enumerate(keys) if k in set(wanted.tolist()))
        assert sorted(zip(wanted[which].tolist(), rows.tolist(), strict=True)) == expected

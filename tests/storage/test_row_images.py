"""Row images of small commits: old rows come from decoded row groups kept across commits (RowGroupCache)."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage import Catalog, Dataset, WriteOptions, changes
from storage.datafiles import ROW_GROUPS, RowGroupCache, read_physical

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("at", pa.timestamp("us")),
        ("image", pa.binary()),
    ]
)
GROUP = 50  # rows per Parquet row group: the 500-row base file has 10


def rows(keys: Any, version: int) -> pa.Table:
    keys = np.asarray(keys, dtype=np.int64)
    return pa.table(
        {
            "id": keys,
            "label": [None if k % 7 == 0 else f"v{version}-{k}" for k in keys.tolist()],
            "score": keys * 0.5 + version,
            "at": pa.array(keys * 1_000 + version, pa.timestamp("us")),
            "image": [bytes([version % 256]) * int(k % 5) for k in keys.tolist()],
        },
        schema=SCHEMA,
    )


def dataset(catalog: Catalog, name: str, log_row_images: bool) -> Dataset:
    options = WriteOptions(row_group_size=GROUP, log_row_images=log_row_images)
    return catalog.create_dataset(name, SCHEMA, ["id"], record_fields=["image"], options=options)


def test_small_commits_decode_each_row_group_they_edit_once(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    logged, plain = dataset(catalog, "logged", True), dataset(catalog, "plain", False)
    reads: Counter[tuple[str, int]] = Counter()

    class Counting(pq.ParquetFile):  # type: ignore[misc]  # pyarrow is untyped
        def __init__(self, source: Any, **kwargs: Any) -> None:
            super().__init__(source, **kwargs)
            self.source = str(source)

        def read_row_group(self, i: int, *args: Any, **kwargs: Any) -> pa.Table:
            reads[(self.source, i)] += 1
            return super().read_row_group(i, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Counting)
    for ds in (logged, plain):
        ds.append(rows(range(500), 0))  # the logged append reads its rows back: its new-row images
    base = set(logged.manifest().column("path").to_pylist())
    rng = np.random.default_rng(7)
    for c in range(1, 7):
        # Updates spread over every row group of the base file, the hot key 123, and new keys.
        keys = np.unique(np.concatenate([rng.choice(500, 12, replace=False), [123], 1_000 + 10 * c + np.arange(5)]))
        for ds in (logged, plain):
            ds.upsert(rows(keys, c))
    monkeypatch.undo()

    logged_reads = {k: n for k, n in reads.items() if "/logged/" in k[0]}
    assert logged_reads, "the first commits decode the base file's row groups"
    assert max(logged_reads.values()) == 1, f"a row group was decoded twice: {logged_reads}"
    assert {p.rsplit("/logged/", 1)[1] for p, _g in logged_reads} <= base, "new commit files are never read back"
    for start, end in [*((v, v + 1) for v in range(1, 7)), (1, 7), (7, 1)]:
        assert logged.diff(start, end).equals(plain.diff(start, end)), f"diff {start} -> {end}"
    assert (
        logged.history(123).drop_columns(["_committed_at"]).equals(plain.history(123).drop_columns(["_committed_at"]))
    )


def test_a_cached_read_matches_a_file_read_and_opens_no_file(catalog: Catalog) -> None:
    ds = dataset(catalog, "ds", False)
    ds.append(rows(range(500), 0))
    ctx = ds._ctx
    path = ds.manifest().column("path")[0].as_py()
    physical = [f.name for f in ctx.layout.physical_schema]
    positions = np.array([499, 3, 250, 3, 0, 49, 50, 451], dtype=np.int64)  # unordered, repeated, group edges
    expected = read_physical(ctx.store, ctx.layout, path, positions, physical)
    assert expected.column("id").to_pylist() == positions.tolist()

    cache, tiny = RowGroupCache(), RowGroupCache(limit=64)  # `tiny` holds no group
    for c in (cache, tiny):
        assert read_physical(ctx.store, ctx.layout, path, positions, physical, c).equals(expected)
    os.remove(os.path.join(catalog.uri, "ds", path))

    again = read_physical(ctx.store, ctx.layout, path, positions[::-1], physical, cache)
    assert again.equals(expected.take(pa.array(np.arange(len(positions))[::-1])))
    with pytest.raises(OSError):
        read_physical(ctx.store, ctx.layout, path, positions, physical, tiny)


def test_a_new_files_remembered_rows_equal_its_stored_rows(catalog: Catalog) -> None:
    ds = dataset(catalog, "ds", True)
    ds.append(rows([5, 1, 9, 7], 3))  # one row group: remembered as written
    ctx = ds._ctx
    path = ds.manifest().column("path")[0].as_py()
    physical = [f.name for f in ctx.layout.physical_schema if f.name != "_lh_pos"]
    positions = np.array([2, 0, 3, 1], dtype=np.int64)
    from_file = read_physical(ctx.store, ctx.layout, path, positions, physical)
    remembered = read_physical(ctx.store, ctx.layout, path, positions, physical, ROW_GROUPS)
    assert remembered.cast(from_file.schema).equals(from_file)
    assert remembered.column("id").to_pylist() == [9, 5, 7, 1]
    assert from_file.column("at")[0].as_py() == dt.datetime(1970, 1, 1, 0, 0, 0, 9_003)


def test_logs_carry_only_the_images_they_have_and_history_reads_them(catalog: Catalog) -> None:
    ds = dataset(catalog, "bulk", True)
    ds.append(rows(range(500), 0))  # inserts only: no old rows to image
    ds.delete(keys=[3, 4])  # deletes only: no new rows
    ds.upsert(rows([5, 600], 1))
    ctx = ds._ctx
    chain = ctx.log.chain(ctx.log.get(ds.snapshot().id))
    logs = [changes.load(ctx.store, str(e.changes)) for e in chain if e.changes][::-1]
    assert [sorted(set(log.column_names) & set(changes.IMAGES)) for log in logs] == [
        ["_post"],
        ["_pre"],
        ["_post", "_pre"],
    ]
    assert ds.history(3).select(["_change_type", "label"]).to_pylist() == [
        {"_change_type": "delete", "label": "v0-3"},
        {"_change_type": "insert", "label": "v0-3"},
    ]
    assert ds.history(5).column("label").to_pylist() == ["v1-5", "v0-5"]
    net = ds.diff(ds.history(3).column("_snapshot_id")[1].as_py(), ds.snapshot().id)
    assert sorted(zip(net.column("id").to_pylist(), net.column("_change_type").to_pylist(), strict=True)) == [
        (3, "delete"),
        (4, "delete"),
        (5, "update_postimage"),
        (5, "update_preimage"),
        (600, "insert"),
    ]


def _expected_diff(ds: Dataset, start: int, end: int) -> list[tuple[Any, ...]]:
    """diff() from two full reads: what the change logs must add up to."""
    a = {r["id"]: r for r in ds.read_all(version=start).to_pylist()}
    b = {r["id"]: r for r in ds.read_all(version=end).to_pylist()}
    out = [("delete", *a[k].values()) for k in a.keys() - b.keys()]
    out += [("insert", *b[k].values()) for k in b.keys() - a.keys()]
    for k in a.keys() & b.keys():
        if a[k] != b[k]:
            out += [("update_preimage", *a[k].values()), ("update_postimage", *b[k].values())]
    return sorted(out, key=repr)


@pytest.mark.parametrize("batch_size", [65_536, 97])
def test_diffs_over_keys_changed_once_and_again_match_full_reads(catalog: Catalog, batch_size: int) -> None:
    """Keys changed once are read from the row-image pool by a filter, keys changed again by a take: both,
    in batches, forwards and backwards, add up to the difference of the two versions' rows."""
    ds = dataset(catalog, "pool", True)
    base = ds.append(rows(range(1_000), 0)).id
    ds.upsert(rows(range(0, 1_000, 2), 1))  # 500 keys, 100 of them changed again below
    ds.upsert(rows([*range(0, 1_000, 10), *range(1_000, 1_300)], 2))
    ds.delete(keys=[*range(1, 400, 3), 1_001])
    ds.compact()  # moves: keys only moved are no change, others keep their images
    ds.upsert(rows(range(500, 700, 4), 3))
    head = ds.snapshot().id
    for start, end in ((base, head), (head, base), (base + 1, head - 1)):
        tables = list(ds.iter_diff(start, end, batch_size=batch_size))
        got = pa.concat_tables(tables).to_pylist() if tables else []
        actual = sorted(((r.pop("_change_type"), *r.values()) for r in got), key=repr)
        assert actual == _expected_diff(ds, start, end), (start, end)


def test_a_diff_in_batches_takes_images_from_the_logs_in_any_order(catalog: Catalog) -> None:
    """Keys changed twice whose last changes alternate between two logs: the post-images a batch needs lie
    in the logs out of key order, and iter_diff() must still pair each with its key."""
    ds = dataset(catalog, "order", True)
    base = ds.append(rows(range(100), 0)).id
    for keys, version in ((range(100), 1), (range(60, 100, 2), 2), (range(61, 100, 2), 3), (range(0, 60), 4)):
        ds.upsert(rows(keys, version))
    head = ds.snapshot().id
    whole = ds.diff(base, head)
    for start, end in ((base, head), (head, base), (base + 1, head)):
        parts = list(ds.iter_diff(start, end, batch_size=7))
        for part in parts:  # each part lists its updated keys' pre-images and post-images in one key order
            kinds, ids = part.column("_change_type").to_pylist(), part.column("id").to_pylist()
            pre = [k for kind, k in zip(kinds, ids, strict=True) if kind == "update_preimage"]
            assert pre == [k for kind, k in zip(kinds, ids, strict=True) if kind == "update_postimage"]
        got = pa.concat_tables(parts).to_pylist()
        actual = sorted(((r.pop("_change_type"), *r.values()) for r in got), key=repr)
        assert actual == _expected_diff(ds, start, end), (start, end)
    assert pa.concat_tables(list(ds.iter_diff(base, head, batch_size=len(whole)))).equals(whole)

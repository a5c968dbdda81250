"""Input forms and streaming, read batching and projection, file pruning, deletion vectors, time travel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _disk import all_files
from _model import INPUT_FORMS, SINGLE_KEY, InputForm, MakeDataset, Model, Row, as_input

from storage import Dataset, StorageError

LAYOUT = SINGLE_KEY
LABELS = ("cat", "dog", "bird")


def rows_for(ids: range | list[int], label: str | None = None) -> list[Row]:
    """Rows whose score equals the id, so a filter on either column selects the same rows."""
    return [LAYOUT.row((i,), label or LABELS[i % 3], i) for i in ids]


def contents(ds: Dataset, version: Any = None) -> list[Row]:
    return LAYOUT.sorted_rows(ds.read_all(version=version).to_pylist())


# ----- input forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", INPUT_FORMS)
@pytest.mark.parametrize("operation", ["append", "insert", "upsert"])
def test_every_input_form_writes_the_same_rows(make_dataset: MakeDataset, form: InputForm, operation: str) -> None:
    ds = make_dataset(LAYOUT, max_rows_per_file=4)
    rows = rows_for(range(10))
    snap = getattr(ds, operation)(as_input(LAYOUT, rows, form))
    assert snap.summary["rows_inserted"] == 10
    assert contents(ds) == rows


def test_iterable_of_tables_and_dicts(make_dataset: MakeDataset) -> None:
    ds = make_dataset(LAYOUT)
    first, second = rows_for(range(3)), rows_for(range(3, 5))
    ds.append([LAYOUT.table(first), as_input(LAYOUT, second, "dict")])
    assert contents(ds) == first + second


def test_columns_in_another_order_and_castable_types_are_conformed(make_dataset: MakeDataset) -> None:
    ds = make_dataset(LAYOUT)
    # int32 scores and a different column order are fine: they cast safely to the dataset's schema.
    ds.append(pa.table({"score": pa.array([1, 2], pa.int32()), "label": ["a", "b"], "id": [1, 2]}))
    assert ds.read_all().schema.equals(pa.schema([f for f in LAYOUT.schema]))
    assert contents(ds) == [LAYOUT.row((1,), "a", 1), LAYOUT.row((2,), "b", 2)]


def test_upsert_replaces_whole_rows(make_dataset: MakeDataset) -> None:
    ds = make_dataset(LAYOUT)
    ds.append(LAYOUT.table(rows_for(range(3))))
    # An omitted nullable column is null in the new row: upsert replaces rows, it does not merge them.
    ds.upsert({"id": [1], "label": ["new"]})
    assert ds.take([1]).to_pylist() == [LAYOUT.row((1,), "new", None)]


def test_generator_of_batches_is_streamed_into_several_files(make_dataset: MakeDataset, catalog_root: Path) -> None:
    ds = make_dataset(LAYOUT, "stream", max_rows_per_file=100)
    data_dir = catalog_root / "stream" / "data"
    files_when_asked: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for b in range(50):
            # How many data files exist when the writer asks for the next batch: a writer that first
            # collected the whole input would see none.
            files_when_asked.append(len(list(data_dir.glob("*.parquet"))) if data_dir.exists() else 0)
            yield LAYOUT.table(rows_for(range(20 * b, 20 * b + 20))).to_batches()[0]

    snap = ds.append(batches())
    manifest = ds.manifest()
    assert manifest.num_rows == snap.summary["files_added"] == 10
    assert max(manifest.column("rows").to_pylist()) <= 100
    assert files_when_asked[-1] >= 9, files_when_asked
    assert files_when_asked == sorted(files_when_asked)
    assert ds.count() == 1000
    assert contents(ds) == rows_for(range(1000))


def test_commit_message_and_properties_are_recorded(make_dataset: MakeDataset) -> None:
    ds = make_dataset(LAYOUT)
    snap = ds.append(LAYOUT.table(rows_for(range(2))), message="first import", properties={"run": "r-1"})
    assert (snap.message, snap.properties) == ("first import", {"run": "r-1"})
    newest = ds.versions().to_pylist()[-1]
    assert (newest["message"], json.loads(newest["properties"])) == ("first import", {"run": "r-1"})
    assert ds.snapshot(snap.id).properties == {"run": "r-1"}


# ----- reads --------------------------------------------------------------------------------------


@pytest.fixture
def thousand(make_dataset: MakeDataset) -> Dataset:
    """1000 rows, ids 0..999 in order, in 20 files of 50 rows: each file holds a disjoint id range."""
    ds = make_dataset(LAYOUT, "thousand", max_rows_per_file=50)
    ds.append(LAYOUT.table(rows_for(range(1000))))
    return ds


@pytest.mark.parametrize("batch_size", [1, 7, 64, 5000])
def test_read_batches_never_exceed_batch_size(thousand: Dataset, batch_size: int) -> None:
    thousand.delete(keys=list(range(0, 1000, 9)))  # deletion vectors thin some batches out
    for flt in (None, pc.field("label") == "cat"):
        batches = list(thousand.read(filter=flt, batch_size=batch_size))
        assert all(0 < b.num_rows <= batch_size for b in batches), [b.num_rows for b in batches]
        assert sum(b.num_rows for b in batches) == thousand.count(filter=flt)


def test_column_projection(thousand: Dataset) -> None:
    table = thousand.read_all(columns=["score", "id"], filter=pc.field("id") < 5)
    assert table.column_names == ["score", "id"]
    assert table.sort_by("id").to_pylist() == [{"score": i, "id": i} for i in range(5)]
    assert all(b.schema.names == ["label"] for b in thousand.read(columns=["label"], batch_size=100))
    # A filter may use a column the projection leaves out.
    assert thousand.read_all(columns=["id"], filter=pc.field("label") == "dog").num_rows == 333
    assert thousand.take([7, 3], columns=["label"]).to_pylist() == [{"label": "dog"}, {"label": "cat"}]


def file_ranges(ds: Dataset) -> list[tuple[str, int, int]]:
    manifest = ds.manifest()
    return sorted(
        zip(
            manifest.column("path").to_pylist(),
            manifest.column("min:id").to_pylist(),
            manifest.column("max:id").to_pylist(),
            strict=True,
        ),
        key=lambda r: r[1],
    )


@pytest.mark.parametrize("column", ["id", "score"])
def test_filter_reads_only_files_whose_statistics_match(thousand: Dataset, catalog_root: Path, column: str) -> None:
    ranges = file_ranges(thousand)
    assert [(lo, hi) for _p, lo, hi in ranges] == [(50 * i, 50 * i + 49) for i in range(20)]
    flt = (pc.field(column) >= 120) & (pc.field(column) < 140)
    needed = [p for p, lo, hi in ranges if lo <= 139 and hi >= 120]
    assert len(needed) == 1
    # Remove every other data file: a read that opened any of them would fail, so a correct answer
    # proves the filter touched one file out of twenty.
    for path, _lo, _hi in ranges:
        if path not in needed:
            (catalog_root / "thousand" / path).unlink()
    assert thousand.read_all(filter=flt).column("id").to_pylist() == list(range(120, 140))
    assert thousand.count(filter=flt) == 20
    with pytest.raises((OSError, StorageError)):  # the removed files were really needed by a full scan
        thousand.read_all()


def test_pruning_keeps_files_with_nulls_for_null_filters(make_dataset: MakeDataset) -> None:
    ds = make_dataset(LAYOUT, max_rows_per_file=2)
    ds.append(LAYOUT.table([LAYOUT.row((1,), "a", 5), LAYOUT.row((2,), "a", None), LAYOUT.row((3,), "a", 7)]))
    assert ds.read_all(filter=pc.field("score").is_null()).column("id").to_pylist() == [2]
    assert ds.read_all(filter=~(pc.field("score") > 6)).column("id").to_pylist() == [1]
    assert ds.count(filter=pc.field("score").is_valid()) == 2


def test_small_upsert_adds_deletion_vectors_without_rewriting_files(thousand: Dataset, catalog_root: Path) -> None:
    root = catalog_root / "thousand"
    model = Model(LAYOUT)
    model.upsert(rows_for(range(1000)))
    before = {r["path"]: r for r in thousand.manifest().to_pylist()}
    files_before = all_files(root / "data")

    # 1%: one row in every other file.
    changed = rows_for(range(0, 1000, 100), label="relabelled")
    snap = thousand.upsert(LAYOUT.table(changed))
    model.upsert(changed)
    after = {r["path"]: r for r in thousand.manifest().to_pylist()}
    assert set(before) <= set(after), "an untouched data file left the manifest"
    added = [after[p] for p in set(after) - set(before)]
    assert [a["rows"] for a in added] == [10]
    touched = {p for p, _lo, _hi in file_ranges(thousand) if p in before and before[p]["min:id"] % 100 == 0}
    for path, row in before.items():
        expected_deleted = 1 if path in touched else 0
        assert after[path]["deleted"] == expected_deleted
        assert (after[path]["dv"] is not None) == (path in touched)
        assert after[path]["rows"] == row["rows"]
    # No data file was rewritten: every old file is byte for byte what it was.
    files_after = all_files(root / "data")
    assert {p: h for p, h in files_after.items() if p in files_before} == files_before
    assert (snap.summary["rows_updated"], snap.summary["rows_inserted"], snap.summary["files_added"]) == (10, 0, 1)
    dv_bytes = sum(after[p]["dv_bytes"] for p in touched)
    assert snap.summary["bytes_written"] == added[0]["bytes"] + dv_bytes

    # A later 1% delete merges into the same deletion vectors and adds no data file.
    thousand.delete(keys=list(range(1, 1000, 100)))
    model.delete_keys((k,) for k in range(1, 1000, 100))
    final = {r["path"]: r for r in thousand.manifest().to_pylist()}
    assert set(final) == set(after)
    assert all(final[p]["deleted"] == 2 for p in touched)
    assert contents(thousand) == model.rows()
    for version in (1, 2, 3):
        assert contents(thousand, version=version) == model.rows(version)


# ----- time travel ------------------------------------------------------------------------------------


def test_time_travel_by_datetime(make_dataset: MakeDataset) -> None:
    ds = make_dataset(LAYOUT)
    snaps = [ds.snapshot()]
    for write in (
        lambda: ds.append(LAYOUT.table(rows_for(range(3)))),
        lambda: ds.upsert(LAYOUT.table(rows_for([1], label="x"))),
        lambda: ds.delete(keys=[0]),
    ):
        time.sleep(0.01)  # distinct commit times, with room between them
        snaps.append(write())
    expected = {s.id: contents(ds, version=s.id) for s in snaps}

    for s, nxt in zip(snaps, [*snaps[1:], None], strict=True):
        assert contents(ds, version=s.created_at) == expected[s.id]
        # Naive datetimes are local time.
        assert contents(ds, version=s.created_at.astimezone().replace(tzinfo=None)) == expected[s.id]
        if nxt is not None:
            between = s.created_at + (nxt.created_at - s.created_at) / 2
            assert ds.snapshot(between).id == s.id
            assert ds.count(version=between) == len(expected[s.id])
    assert ds.snapshot(datetime.now(UTC) + timedelta(days=1)).id == snaps[-1].id

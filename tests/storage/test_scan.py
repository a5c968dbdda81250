"""Filtered reads in two phases: filter columns and positions first, the other columns only for the hits."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import storage.scan
from storage import Catalog, Dataset, WriteOptions
from storage.scan import filter_columns

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("g", pa.string()),
        pa.field("payload", pa.string()),
        pa.field("image", pa.binary()),
    ]
)
ROWS, GROUP = 8_000, 1_000


def payload(i: int) -> str:
    return f"{i:08d}" + os.urandom(1_000).hex()  # 2 KB of hex: about 1 KB once compressed


@pytest.fixture
def wide(catalog: Catalog) -> Dataset:
    """8,000 rows in 2 files of 4 row groups of 1,000; a 2 KB column; record field `image`; some rows deleted."""
    options = WriteOptions(max_rows_per_file=4_000, row_group_size=GROUP)
    ds = catalog.create_dataset("wide", SCHEMA, ["id"], record_fields=["image"], options=options)
    ids = list(range(ROWS))
    ds.append(
        {
            "id": ids,
            "g": [f"g{i % 7}" for i in ids],
            "payload": [payload(i) for i in ids],
            "image": [bytes([i % 251]) * (i % 5) for i in ids],
        }
    )
    ds.delete(keys=[3_501, 3_502, 7_000])  # deletion vectors in both files
    return ds


def expected(ds: Dataset, keep: pc.Expression, columns: list[str]) -> pa.Table:
    """The same rows by filtering a full read in memory."""
    return ds.read_all(columns=SCHEMA.names).filter(keep).select(columns)


# Arithmetic defeats pruning by statistics: Arrow cannot bound `id * 1` by the row groups' min/max of `id`.
CLUSTERED = (pc.field("id") * 1 >= 3_500) & (pc.field("id") * 1 < 3_520)  # 20 rows of one row group
SPREAD = pc.bit_wise_and(pc.field("id"), 127) == 7  # one row in 128: every row group


@pytest.mark.parametrize("flt", [CLUSTERED, SPREAD, pc.field("g") == "g3", pc.scalar(False)], ids=str)
@pytest.mark.parametrize("columns", [["id", "payload"], ["payload", "g", "image", "id"], ["id"]], ids=str)
def test_filtered_reads_equal_filtering_a_full_read(wide: Dataset, flt: pc.Expression, columns: list[str]) -> None:
    got = wide.read_all(filter=flt, columns=columns)
    assert got.equals(expected(wide, flt, columns))  # same rows, same (file) order, same types


def test_batches_respect_batch_size_and_old_versions_keep_their_rows(wide: Dataset) -> None:
    batches = list(wide.read(filter=SPREAD, columns=["payload", "id"], batch_size=7))
    assert all(b.num_rows <= 7 for b in batches)
    assert pa.Table.from_batches(batches).equals(expected(wide, SPREAD, ["payload", "id"]))
    before_deletes = wide.read_all(filter=CLUSTERED, columns=["id", "payload"], version=1)
    assert before_deletes.column("id").to_pylist() == list(range(3_500, 3_520))
    assert wide.count(CLUSTERED) == 18 and wide.count(CLUSTERED, version=1) == 20


def bytes_read() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux I/O accounting")
def test_other_columns_are_read_only_for_row_groups_with_hits(wide: Dataset) -> None:
    payload_bytes = ROWS * 2_000
    before = bytes_read()
    got = wide.read_all(filter=CLUSTERED, columns=["id", "payload"])
    read = bytes_read() - before
    assert got.num_rows == 18
    # One row group of eight of the payload (~1 MB: hex compresses to half), the ids of all, footers and
    # metadata: 1.2 MB here. Decoding every column before filtering read 8.4 MB.
    assert read < payload_bytes / 6, read


def test_filter_columns_are_the_ones_an_expression_reads() -> None:
    schema = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())])
    assert filter_columns(schema, (pc.field("a") * 2 > 3) & pc.field("c").is_null()) == {"a", "c"}
    assert filter_columns(schema, pc.scalar(True)) == set()


def test_positions_of_hits_skip_deleted_rows(wide: Dataset) -> None:
    got = wide.read_all(filter=CLUSTERED, columns=["id"]).column("id").to_numpy()
    assert np.array_equal(got, np.array([i for i in range(3_500, 3_520) if i not in (3_501, 3_502)]))


@pytest.mark.parametrize("thread_rows", [0, storage.scan.DV_THREAD_ROWS], ids=["threads", "in_place"])
def test_unfiltered_reads_drop_the_deleted_rows_of_every_batch_in_file_order(
    wide: Dataset, monkeypatch: pytest.MonkeyPatch, thread_rows: int
) -> None:
    # Deletions in every row group of both files: every batch is copied without its deleted rows (on threads
    # or in place), and the batches still come in file order, each column aligned with the others.
    monkeypatch.setattr(storage.scan, "DV_THREAD_ROWS", thread_rows)
    deleted = set(range(0, ROWS, 37)) | {3_501, 3_502, 7_000}
    wide.delete(keys=sorted(deleted))
    live = [i for i in range(ROWS) if i not in deleted]
    batches = list(wide.read(columns=["id", "g"], batch_size=300))
    assert len(batches) > 2 * ROWS // GROUP and all(b.num_rows <= 300 for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == live
    assert table.column("g").to_pylist() == [f"g{i % 7}" for i in live]
    assert wide.read_all(columns=["id"]).column("id").to_pylist() == live
    assert wide.read_all(filter=pc.field("g") == "g3", columns=["id"]).column("id").to_pylist() == [
        i for i in live if i % 7 == 3
    ]
    first = next(iter(wide.read(columns=["id"], batch_size=100)))  # a scan left unfinished
    assert first.column("id").to_pylist() == live[: first.num_rows]

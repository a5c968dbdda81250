"""ds.sql() and cat.sql(): DuckDB over pinned snapshots, deletions applied, filters pushed to the scan."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

from storage import Catalog, Dataset, DatasetNotFoundError, InvalidInputError, WriteOptions
from storage.io import LocalStore

FRAMES = pa.schema(
    [pa.field("id", pa.int64(), nullable=False), pa.field("label", pa.string()), pa.field("image", pa.binary())]
)
SCORES = pa.schema([pa.field("frame_id", pa.int64(), nullable=False), pa.field("score", pa.float64())])


@pytest.fixture
def cat(catalog: Catalog) -> Catalog:
    """frames: v1 ids 1-6, v2 deletes 2 and relabels 3; scores: v1 ids 1-6, v2 adds 7 and rescores 1."""
    frames = catalog.create_dataset("frames", FRAMES, ["id"], record_fields=["image"])
    frames.append({"id": [1, 2, 3, 4, 5, 6], "label": ["cat", "dog", "cat", "dog", "cat", "bird"], "image": [b"x"] * 6})
    frames.delete(keys=[2])
    frames.upsert({"id": [3], "label": ["fox"], "image": [b"y"]})
    scores = catalog.create_dataset("scores", SCORES, ["frame_id"])
    scores.append({"frame_id": [1, 2, 3, 4, 5, 6], "score": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    scores.upsert({"frame_id": [1, 7], "score": [0.9, 0.7]})
    return catalog


def test_a_dataset_is_queried_under_its_name(cat: Catalog) -> None:
    frames = cat.dataset("frames")
    got = frames.sql("SELECT label, count(*) AS n FROM frames GROUP BY label ORDER BY label")
    assert got.to_pylist() == [
        {"label": "bird", "n": 1},
        {"label": "cat", "n": 2},
        {"label": "dog", "n": 1},
        {"label": "fox", "n": 1},
    ]


def test_deleted_and_replaced_rows_are_invisible(cat: Catalog) -> None:
    frames = cat.dataset("frames")
    assert frames.sql("SELECT id, label FROM frames ORDER BY id").to_pylist() == [
        {"id": 1, "label": "cat"},
        {"id": 3, "label": "fox"},
        {"id": 4, "label": "dog"},
        {"id": 5, "label": "cat"},
        {"id": 6, "label": "bird"},
    ]
    assert frames.sql("SELECT count(*) AS n FROM frames WHERE id IN (2, 3)").to_pylist() == [{"n": 1}]
    assert frames.sql("SELECT label FROM frames WHERE id = 3").to_pylist() == [{"label": "fox"}]
    assert frames.sql("SELECT count(*) AS n FROM frames", version=1).to_pylist() == [{"n": 6}]


def test_only_index_columns_are_visible(cat: Catalog) -> None:
    frames = cat.dataset("frames")
    assert frames.sql("SELECT * FROM frames LIMIT 1").column_names == ["id", "label"]
    for hidden in ("image", "_lh_pos", "_lh_fid", "_lh_rec_file"):
        with pytest.raises(InvalidInputError, match="record fields"):
            frames.sql(f"SELECT {hidden} FROM frames")


def test_join_of_two_datasets_pinned_at_different_versions(cat: Catalog) -> None:
    query = "SELECT f.id, f.label, s.score FROM frames f JOIN scores s ON s.frame_id = f.id ORDER BY f.id"
    old_frames_new_scores = cat.sql(query, versions={"frames": 1})
    assert old_frames_new_scores.to_pylist() == [
        {"id": 1, "label": "cat", "score": 0.9},
        {"id": 2, "label": "dog", "score": 0.2},
        {"id": 3, "label": "cat", "score": 0.3},
        {"id": 4, "label": "dog", "score": 0.4},
        {"id": 5, "label": "cat", "score": 0.5},
        {"id": 6, "label": "bird", "score": 0.6},
    ]
    cat.dataset("scores").tag("first", version=1)
    new_frames_old_scores = cat.sql(query, versions={"scores": "first"})
    assert [(r["id"], r["label"], r["score"]) for r in new_frames_old_scores.to_pylist()] == [
        (1, "cat", 0.1),
        (3, "fox", 0.3),
        (4, "dog", 0.4),
        (5, "cat", 0.5),
        (6, "bird", 0.6),
    ]


def test_errors_name_what_to_fix(cat: Catalog) -> None:
    with pytest.raises(DatasetNotFoundError, match="nope"):
        cat.sql("SELECT 1", versions={"nope": 1})
    with pytest.raises(InvalidInputError, match="SQL failed"):
        cat.sql("SELEKT 1")
    with pytest.raises(InvalidInputError, match="frames"):
        cat.dataset("frames").sql("SELECT * FROM scores")  # ds.sql exposes its own dataset only


def test_empty_datasets_and_odd_names_work(catalog: Catalog) -> None:
    ds = catalog.create_dataset("my-frames", FRAMES, ["id"], record_fields=["image"])
    assert ds.sql('SELECT count(*) AS n FROM "my-frames"').to_pylist() == [{"n": 0}]
    assert catalog.sql('SELECT * FROM "my-frames"').num_rows == 0


class CountingFS(pafs.FileSystemHandler):
    """A local filesystem that records every file opened for reading."""

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()
        self.opened: list[str] = []

    def open_input_file(self, path: str) -> Any:
        self.opened.append(path)
        return self.fs.open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        self.opened.append(path)
        return self.fs.open_input_stream(path)

    def get_type_name(self) -> str:
        return "counting"

    def get_file_info(self, paths: list[str]) -> Any:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> Any:
        return self.fs.get_file_info(selector)

    def normalize_path(self, path: str) -> str:
        return path

    def _read_only(self, *args: Any) -> None:
        raise AssertionError("a query must not write")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def bytes_read() -> int:
    """Bytes this process has read through read(2)/pread(2) so far (DuckDB's reads included)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.fixture
def big(catalog: Catalog) -> Dataset:
    """1M rows (id, v = id / 2) in 10 files of 100,000 rows; id 123,456 deleted."""
    n, per_file = 1_000_000, 100_000
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.float64())])
    ds = catalog.create_dataset("big", schema, ["id"], options=WriteOptions(max_rows_per_file=per_file))
    ids = np.arange(n, dtype=np.int64)
    ds.append(pa.table({"id": ids, "v": ids * 0.5}, schema=schema))
    ds.delete(pc.field("id") == 123_456)
    assert ds.manifest().num_rows == n // per_file
    return ds


SELECTIVE = "SELECT count(*) AS n, sum(v) AS total FROM big WHERE id BETWEEN 123000 AND 123999"
SELECTED = [{"n": 999, "total": sum(i * 0.5 for i in range(123_000, 124_000)) - 123_456 * 0.5}]


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux I/O accounting")
def test_a_selective_filter_on_1m_rows_reads_only_the_matching_file(big: Dataset) -> None:
    manifest = big.manifest()
    wanted = big.files(pc.field("id") == 123_000)
    assert len(wanted) == 1
    wanted_bytes = manifest.filter(pc.field("path") == wanted[0]).column("bytes")[0].as_py()
    assert big.sql("SELECT count(*) AS n FROM big").to_pylist() == [{"n": 999_999}]  # DuckDB loaded, view bound

    before = bytes_read()
    big.sql(SELECTIVE.replace("BETWEEN 123000 AND 123999", "< 0"))  # every row group pruned: the fixed costs
    fixed = bytes_read() - before
    before = bytes_read()
    assert big.sql(SELECTIVE).to_pylist() == SELECTED
    read = bytes_read() - before - fixed
    # Beyond what any query reads (footers and the like), DuckDB reads only the row group that may match.
    assert read <= wanted_bytes < sum(manifest.column("bytes").to_pylist()) / 5


def test_remote_files_go_through_arrow_which_opens_only_the_matching_file(
    big: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = big.files(pc.field("id") == 123_000)
    counting = CountingFS()
    monkeypatch.setattr(LocalStore, "local_path", lambda self, path: None)  # as for S3: DuckDB cannot open them
    monkeypatch.setattr(LocalStore, "arrow_fs", lambda self: (pafs.PyFileSystem(counting), self.uri))

    assert big.sql(SELECTIVE).to_pylist() == SELECTED
    assert {p.rsplit("/", 1)[-1] for p in counting.opened} == {wanted[0].rsplit("/", 1)[-1]}


@pytest.mark.parametrize("reader", ["parquet", "arrow"])
def test_every_version_matches_a_scan_with_deletions_in_many_files(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    if reader == "arrow":
        monkeypatch.setattr(LocalStore, "local_path", lambda self, path: None)
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("g", pa.string())])
    ds = catalog.create_dataset("t", schema, ["id"], options=WriteOptions(max_rows_per_file=100, row_group_size=32))
    ds.append({"id": list(range(1000)), "g": [f"g{i % 7}" for i in range(1000)]})
    ds.delete(keys=list(range(0, 1000, 3)))  # a deletion vector in every file
    ds.upsert({"id": list(range(990, 1100)), "g": ["new"] * 110})
    ds.delete(pc.field("g") == "g2")
    query = "SELECT g, count(*) AS n, sum(id) AS s FROM t WHERE id % 5 <> 1 GROUP BY g ORDER BY g"
    for version in range(1, ds.snapshot().id + 1):
        kept = [r for r in ds.read_all(version=version).to_pylist() if r["id"] % 5 != 1]
        expected: dict[str, tuple[int, int]] = {}
        for r in kept:
            n, total = expected.get(r["g"], (0, 0))
            expected[r["g"]] = (n + 1, total + r["id"])
        got = ds.sql(query, version=version).to_pylist()
        assert got == [{"g": g, "n": n, "s": total} for g, (n, total) in sorted(expected.items())], version


def test_types_parquet_does_not_carry_exactly_are_read_as_arrow_types(catalog: Catalog) -> None:
    """Parquet stores a duration as a bare integer; through Arrow, DuckDB sees an INTERVAL, as it always did."""
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("took", pa.duration("ms"))])
    ds = catalog.create_dataset("runs", schema, ["id"])
    ds.append(pa.table({"id": [1, 2], "took": pa.array([1500, 250], pa.duration("ms"))}, schema=schema))
    got = ds.sql("SELECT took, took > INTERVAL 1 SECOND AS slow FROM runs ORDER BY id")
    assert pa.types.is_interval(got.schema.field("took").type)
    assert [v.nanoseconds for v in got.column("took").to_pylist()] == [1_500_000_000, 250_000_000]
    assert got.column("slow").to_pylist() == [True, False]

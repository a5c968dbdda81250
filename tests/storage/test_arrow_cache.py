"""Reads through the Arrow cache: the same rows as Parquet reads, filled once, damaged entries dropped,
within its byte budget, and never the reason a read fails."""

from __future__ import annotations

import logging
import os
import shutil
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _procs import cached_reader
from test_concurrency import WORKERS, run_workers

import storage.arrow_cache
import storage.scan
from storage import ArrowCacheOptions, Catalog, CorruptDatasetError, Dataset, WriteOptions

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("image", pa.binary()),
    ]
)
ROWS = 3_000


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A catalog with dataset `ds`: 3,000 rows in 3 files, a record field, rows deleted and updated."""
    lake = tmp_path / "lake"
    ds = Catalog(lake).create_dataset(
        "ds", SCHEMA, ["id"], record_fields=["image"], options=WriteOptions(max_rows_per_file=1_000)
    )
    ids = list(range(ROWS))
    ds.append(
        {
            "id": ids,
            "label": [("cat", "dog", None)[i % 3] for i in ids],
            "score": [i / ROWS for i in ids],
            "image": [bytes([i % 251]) * (i % 4) for i in ids],
        }
    )
    ds.delete(keys=[5, 1_500, 2_999])  # deletion vectors in every file
    ds.upsert({"id": [7, 3_000], "label": ["bird", "new"], "score": [0.5, 1.0], "image": [b"x", None]})
    return lake


def copies_of(root: Path) -> int:
    """Entries a full read of the head fills: a copy of every file, and of the live rows of every file with
    deletions."""
    files = Catalog(root).dataset("ds").manifest().to_pylist()
    return len(files) + sum(1 for f in files if f["dv"])


def cached(root: Path, cache: Path, max_bytes: int = 1 << 30) -> Dataset:
    return Catalog(root, arrow_cache=ArrowCacheOptions(str(cache), max_bytes)).dataset("ds")


@pytest.mark.parametrize(
    "flt",
    [None, pc.field("label") == "cat", (pc.field("score") > 0.2) & (pc.field("score") < 0.21), pc.scalar(False)],
    ids=str,
)
@pytest.mark.parametrize("columns", [None, ["score", "id"], ["image", "id"]], ids=str)
@pytest.mark.parametrize("batch_size", [None, 97])
def test_reads_match_parquet_reads(
    root: Path, tmp_path: Path, flt: pc.Expression | None, columns: list[str] | None, batch_size: int | None
) -> None:
    plain = Catalog(root).dataset("ds")
    through = cached(root, tmp_path / "cache")
    want = plain.read_all(filter=flt, columns=columns)
    for _ in range(2):  # the first read fills the cache, the second reads only from it
        assert through.read_all(filter=flt, columns=columns).equals(want)
        batches = list(through.read(filter=flt, columns=columns, batch_size=batch_size))
        assert all(b.num_rows <= (batch_size or ROWS) for b in batches)
        assert pa.Table.from_batches(batches, want.schema).equals(want)
    assert through.read_all(version=1).equals(plain.read_all(version=1))
    assert through.take([7, 5, 2_998]).equals(plain.take([7, 5, 2_998]))
    assert through.count(filter=flt) == plain.count(filter=flt)


def test_a_filled_cache_decodes_nothing(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    want = cached(root, cache).read_all()
    assert len(entries(cache)) == copies_of(root)

    def refuse(*_args: object) -> None:
        raise AssertionError("decoded a data file the cache holds")

    monkeypatch.setattr(storage.arrow_cache, "_decode", refuse)
    assert cached(root, cache).read_all().equals(want)  # a new catalog: nothing held in memory


def is_live_copy(entry: Path) -> bool:
    """Whether an entry holds a file's live rows (its source names a deletion vector) or all of them."""
    source = pa.ipc.open_file(pa.memory_map(str(entry))).schema.metadata[storage.arrow_cache.SOURCE_KEY]
    return source.count(b"\n") == 3


@pytest.mark.parametrize("copy", ["whole", "live"])
@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_file"])
def test_a_damaged_entry_is_dropped_and_refilled(
    root: Path, tmp_path: Path, damage: str, copy: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    want = cached(root, cache).read_all()
    by_rows: dict[int, list[Path]] = {}
    for p in entries(cache):
        if is_live_copy(p):
            if copy == "whole":  # reads then open the copies of whole files, and refill these
                p.unlink()
                continue
        elif copy == "live":
            continue
        by_rows.setdefault(pa.ipc.open_file(pa.memory_map(str(p))).read_all().num_rows, []).append(p)
    # Two entries of as many rows: 1,000 (whole files), or 999 (the live rows of files missing one row).
    first, second = next(ps for ps in by_rows.values() if len(ps) > 1)[:2]
    if damage == "truncate":
        first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    elif damage == "garbage":
        first.write_bytes(os.urandom(first.stat().st_size))
    else:  # another file's copy under this name: as many rows, the same schema, but it names its own file
        shutil.copy(second, first)
    with caplog.at_level(logging.WARNING, logger="storage.arrow_cache"):
        assert cached(root, cache).read_all().equals(want)
    assert ("does not match" if damage == "other_file" else "unreadable entry") in caplog.text
    assert cached(root, cache).read_all().equals(want)  # refilled: a valid entry again


def test_a_version_read_again_drops_no_rows(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first read of a version keeps each file's live rows; later reads of it only map them."""
    cache = tmp_path / "cache"
    want = cached(root, cache).read_all()

    def refuse(*_args: object) -> None:
        raise AssertionError("dropped deleted rows again")

    monkeypatch.setattr(storage.scan, "_live_range", refuse)
    monkeypatch.setattr(storage.scan, "_live", refuse)
    monkeypatch.setattr(storage.arrow_cache, "_decode", refuse)
    again = cached(root, cache)
    assert again.read_all().equals(want)
    assert again.read_all(filter=pc.field("label") == "cat").equals(want.filter(pc.field("label") == "cat"))


def test_each_version_of_a_file_has_its_own_live_copy(root: Path, tmp_path: Path) -> None:
    plain = Catalog(root).dataset("ds")
    before = plain.snapshot().id
    plain.delete(keys=[1_501, 2_000])
    through = cached(root, tmp_path / "cache")
    for _ in range(2):
        for version in (before, None):
            assert through.read_all(version=version).equals(plain.read_all(version=version))
    live = [p for p in entries(tmp_path / "cache") if is_live_copy(p)]
    assert len(live) == 3 + 2  # the version before: 3 files with deletions; then 2 of them deleted more


def test_a_read_stopped_early_keeps_no_live_copy(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    batches = cached(root, cache).read(batch_size=10)
    next(batches)
    batches.close()
    assert entries(cache) and not any(is_live_copy(p) or p.name.endswith(".part") for p in entries(cache))


def test_a_live_copy_that_fails_to_write_never_fails_the_read(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    through = cached(root, cache)
    through.read_all(filter=pc.scalar(True))  # filtered: copies of whole files only
    opened = pa.ipc.new_file

    class FullDisk:
        def __init__(self, sink: Any, schema: pa.Schema) -> None:
            self._writer = opened(sink, schema)

        def write_batch(self, batch: pa.RecordBatch) -> None:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self._writer.close()

    monkeypatch.setattr(pa.ipc, "new_file", FullDisk)
    with caplog.at_level(logging.WARNING, logger="storage.arrow_cache"):
        assert through.read_all().equals(Catalog(root).dataset("ds").read_all())
    assert "No space left on device" in caplog.text
    assert not any(is_live_copy(p) or p.name.endswith(".part") for p in entries(cache))


def test_the_cache_stays_within_its_budget(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sizes = [p.stat().st_size for p in entries(_filled(root, tmp_path / "unbounded"))]
    budget = sum(sizes) - 1  # room for all entries but one
    ds = cached(root, cache, budget)
    want = Catalog(root).dataset("ds").read_all()
    for _ in range(3):
        assert ds.read_all().equals(want)
        held = entries(cache)
        assert 0 < len(held) < len(sizes)
        assert sum(p.stat().st_size for p in held) <= budget


def _filled(root: Path, cache: Path) -> Path:
    cached(root, cache).read_all()
    return cache


def test_an_entry_evicted_while_in_use_still_reads(root: Path, tmp_path: Path) -> None:
    """Another process may evict an entry a read has mapped; the mapping keeps the rows readable."""
    cache = _filled(root, tmp_path / "cache")
    table = cached(root, cache).read_all()
    shutil.rmtree(cache)
    assert table.equals(Catalog(root).dataset("ds").read_all())


def test_an_unusable_cache_directory_never_fails_a_read(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, logger="storage.arrow_cache"):
        got = cached(root, blocked).read_all()
    assert got.equals(Catalog(root).dataset("ds").read_all())
    assert "cannot keep a copy" in caplog.text


def test_a_missing_data_file_is_reported_not_cached(root: Path, tmp_path: Path) -> None:
    ds = cached(root, tmp_path / "cache")
    victim = ds.files()[0]
    os.unlink(root / "ds" / victim)
    with pytest.raises(CorruptDatasetError, match=victim):
        ds.read_all()
    assert not any(p.suffix == ".part" for p in entries(tmp_path / "cache"))


def test_the_environment_names_the_default_cache(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv(storage.arrow_cache.ENV_DIRECTORY, str(cache))
    Catalog(root).dataset("ds").read_all()
    assert entries(cache)
    monkeypatch.delenv(storage.arrow_cache.ENV_DIRECTORY)
    assert Catalog(root)._arrow_cache is None


def test_processes_filling_the_same_entries_at_once(root: Path, tmp_path: Path, spawn: SpawnContext) -> None:
    cache = tmp_path / "cache"
    results = run_workers(spawn, cached_reader, lambda w: (str(root), "ds", str(cache), w))
    want = Catalog(root).dataset("ds").read_all().sort_by("id").to_pylist()
    assert [rows == want for _w, rows in results] == [True] * WORKERS
    held = entries(cache)
    assert len(held) == copies_of(root)  # one entry per copy, no leftovers
    assert not any(p.name.endswith(".part") for p in held)


def test_a_remote_catalog_reads_through_the_cache(moto_s3: Any, tmp_path: Path) -> None:
    uri = f"s3://{moto_s3.new_bucket()}/lake"
    options = moto_s3.options
    ds = Catalog(uri, **options).create_dataset("ds", SCHEMA, ["id"], options=WriteOptions(max_rows_per_file=50))
    ds.append({"id": list(range(120)), "label": ["a"] * 120, "score": [0.0] * 120, "image": [b"i"] * 120})
    ds.delete(keys=[3])
    cache = tmp_path / "cache"
    through = Catalog(uri, arrow_cache=ArrowCacheOptions(str(cache)), **options).dataset("ds")
    want = Catalog(uri, **options).dataset("ds").read_all()
    assert through.read_all().equals(want)
    assert len(entries(cache)) == 4  # three files, and the live rows of the one missing a row
    assert through.read_all(filter=pc.field("id") < 10).equals(want.filter(pc.field("id") < 10))

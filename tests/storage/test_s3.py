"""S3 catalogs against moto's S3 server on 127.0.0.1 (a real HTTP endpoint, see `moto_s3` in tests/conftest.py).

Every catalog operation is run on an `s3://` catalog and read back through a *fresh* Catalog object, so
nothing is answered from the writer's in-process caches. Record fields are read through the local record
cache; a catalog downloaded from S3 to a directory must open and read identically (relative paths); two
processes committing to one S3 dataset rely on conditional puts (`If-None-Match: *`).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_rollups import SCHEMA as ROLLUP_SCHEMA
from test_rollups import diff_rows, edit, expected_diff

from storage import (
    Catalog,
    CommitConflictError,
    Dataset,
    DatasetExistsError,
    DatasetNotFoundError,
    InvalidNameError,
    MergeConflictError,
    PrimaryKeyConflictError,
    RecordCacheOptions,
    StoreAccessError,
    TagExistsError,
    VersionNotFoundError,
    WriteOptions,
    rollups,
)
from storage.io import open_store
from storage.lineage import ROLLUPS

pytestmark = pytest.mark.integration

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("label", pa.string()), ("score", pa.int64())])
MEDIA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("label", pa.string()), ("image", pa.binary())])
BIG = 20 * 1024 * 1024
CONFLICT = "conflict"
RACE_OBJECTS = 40

Row = dict[str, Any]


StartServer = Callable[[], AbstractContextManager[str]]  # the `start_moto_server` fixture


class S3Server(Protocol):
    """What the `moto_s3` fixture yields."""

    endpoint_url: str
    options: dict[str, Any]
    log_path: Path | None

    def client(self) -> Any: ...

    def new_bucket(self) -> str: ...


# ----- helpers -----------------------------------------------------------------------------------------


def rows(table: pa.Table) -> list[Row]:
    """Rows sorted by id, so tables compare regardless of file and batch order."""
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def tbl(data: list[Row], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(data, schema=schema)


def plain(ids: Any, label: str = "a", score: int | None = None) -> list[Row]:
    return [{"id": i, "label": label, "score": i if score is None else score} for i in ids]


def s3_keys(s3: S3Server, uri: str, under: str = "") -> dict[str, int]:
    """Objects under a catalog (or one of its sub-paths), read with boto3 rather than the engine: key -> size."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    start = "/".join(p for p in (prefix, under) if p)
    start = f"{start}/" if start else ""
    out: dict[str, int] = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        out.update({o["Key"][len(start) :]: int(o["Size"]) for o in page.get("Contents", [])})
    return out


def download_catalog(s3: S3Server, uri: str, target: Path) -> Path:
    """Sync a catalog from S3 to a local directory (every object, same relative path)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = s3.client()
    for rel in s3_keys(s3, uri):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, f"{prefix}/{rel}", str(dest))
    return target


def cached_files(cache_dir: Path) -> dict[str, int]:
    """Record files in the cache: name -> size (partial downloads included, they take space too)."""
    return {p.name: p.stat().st_size for p in cache_dir.rglob("*") if p.is_file()} if cache_dir.exists() else {}


# ----- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def s3_uri(moto_s3: S3Server) -> str:
    """A catalog URI in a fresh, empty bucket."""
    return f"s3://{moto_s3.new_bucket()}/lake"


@pytest.fixture
def open_catalog(moto_s3: S3Server, s3_uri: str) -> Callable[[], Catalog]:
    """A new Catalog object on the test's S3 catalog each call: it shares no cache with earlier ones."""
    return lambda: Catalog(s3_uri, **moto_s3.options)


@pytest.fixture
def open_cached(moto_s3: S3Server, s3_uri: str) -> Callable[[Path, int], Dataset]:
    """The media dataset through a new Catalog whose record cache is `cache_dir`, holding at most `limit` bytes."""
    return lambda cache_dir, limit: Catalog(
        s3_uri, record_cache=RecordCacheOptions(str(cache_dir), limit), **moto_s3.options
    ).dataset("media")


@pytest.fixture
def cat(open_catalog: Callable[[], Catalog]) -> Catalog:
    return open_catalog()


@pytest.fixture(autouse=True)
def record_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the default record cache (under the temp dir) inside this test's tmp_path; returns its path."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp / "labelhouse-records"


# ----- the object store itself -------------------------------------------------------------------------


def test_server_listens_on_loopback_only(moto_s3: S3Server) -> None:
    port = int(moto_s3.endpoint_url.rsplit(":", 1)[1])
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no /proc/net/tcp on this platform")
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):  # IPv6 disabled
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"], f"moto listens on {listening}, expected only 127.0.0.1"


def test_store_primitives_and_conditional_put(moto_s3: S3Server, s3_uri: str, tmp_path: Path) -> None:
    store = open_store(s3_uri, **moto_s3.options)
    assert store.put_if_absent("_log/1.json", b"first")
    assert not store.put_if_absent("_log/1.json", b"second"), "If-None-Match: * must refuse an existing key"
    assert store.read_bytes("_log/1.json") == b"first"
    with pytest.raises(FileNotFoundError):
        store.read_bytes("_log/2.json")
    with pytest.raises(FileNotFoundError):
        store.size("_log/2.json")
    assert store.exists("_log/1.json") and not store.exists("_log/2.json")
    assert store.size("_log/1.json") == 5

    store.write_bytes("data/a/x.bin", b"xyz")
    local = tmp_path / "upload.bin"
    local.write_bytes(b"12345678")
    assert store.put_file("data/b.bin", str(local)) == 8
    assert {f.path: f.size for f in store.list_files("data")} == {"data/a/x.bin": 3, "data/b.bin": 8}
    assert store.list_dirs() == ["_log", "data"] and store.list_dirs("data") == ["a"]
    assert store.child("data").read_bytes("a/x.bin") == b"xyz"
    assert s3_keys(moto_s3, s3_uri) == {"_log/1.json": 5, "data/a/x.bin": 3, "data/b.bin": 8}

    store.delete("data/a/x.bin")
    store.delete("data/never-existed.bin")  # absent objects are ignored
    assert not store.exists("data/a/x.bin")
    with pytest.raises(InvalidNameError):
        store.read_bytes("../escape")


# ----- catalog and dataset operations ------------------------------------------------------------------


def test_create_list_drop_datasets(moto_s3: S3Server, s3_uri: str, open_catalog: Callable[[], Catalog]) -> None:
    cat = open_catalog()
    assert cat.datasets() == []
    frames = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    frames.append(tbl(plain([1, 2])))
    cat.create_dataset("labels", SCHEMA, primary_keys=["id"])
    with pytest.raises(DatasetExistsError):
        cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    assert cat.create_dataset("frames", SCHEMA, primary_keys=["id"], exist_ok=True).count() == 2

    other = open_catalog()
    assert other.datasets() == ["frames", "labels"] and "labels" in other
    assert other.dataset("frames").schema.equals(SCHEMA) and other.dataset("frames").primary_keys == ["id"]
    other.drop("labels")
    assert cat.datasets() == ["frames"]
    assert not any(k.startswith("labels/") for k in s3_keys(moto_s3, s3_uri)), "drop must delete every object"
    with pytest.raises(DatasetNotFoundError):
        open_catalog().dataset("labels")
    with pytest.raises(DatasetNotFoundError):
        other.drop("labels")
    again = other.create_dataset("labels", SCHEMA, primary_keys=["id"])
    assert again.count() == 0 and open_catalog().datasets() == ["frames", "labels"]


def test_catalog_at_the_bucket_root(moto_s3: S3Server) -> None:
    uri = f"s3://{moto_s3.new_bucket()}"
    ds = Catalog(uri, **moto_s3.options).create_dataset("frames", MEDIA, primary_keys=["id"], record_fields=["image"])
    ds.append(tbl([{"id": 1, "label": "a", "image": b"blob"}], MEDIA))
    fresh = Catalog(uri, **moto_s3.options)
    assert fresh.datasets() == ["frames"] and fresh.uri == uri
    assert fresh.dataset("frames").read_all(columns=["id", "image"]).to_pylist() == [{"id": 1, "image": b"blob"}]
    assert fresh.dataset("frames").validate().problems == []
    fresh.drop("frames")
    assert Catalog(uri, **moto_s3.options).datasets() == [] and s3_keys(moto_s3, uri) == {"_catalog.json": 20}


def test_writes_and_reads(moto_s3: S3Server, s3_uri: str, cat: Catalog, open_catalog: Callable[[], Catalog]) -> None:
    ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"], options=WriteOptions(max_rows_per_file=4))
    model: dict[int, Row] = {}

    s1 = ds.append(tbl(plain(range(10), label="a") + plain(range(10, 12), label="b")), message="first")
    model.update({r["id"]: r for r in plain(range(10), label="a") + plain(range(10, 12), label="b")})
    state1 = list(model.values())
    s2 = ds.insert({"id": [20, 21], "label": ["c", "c"], "score": [1, 2]})
    model.update({20: {"id": 20, "label": "c", "score": 1}, 21: {"id": 21, "label": "c", "score": 2}})
    objects = s3_keys(moto_s3, s3_uri)
    with pytest.raises(PrimaryKeyConflictError) as conflict:
        ds.insert(tbl(plain([21, 22])))
    assert conflict.value.keys == [21] and ds.snapshot().id == s2.id and ds.count() == 14
    assert s3_keys(moto_s3, s3_uri) == objects, "a refused insert must leave no object behind"
    s3 = ds.upsert(tbl([{"id": 5, "label": "b", "score": 50}, {"id": 30, "label": "b", "score": 30}]))
    model.update({5: {"id": 5, "label": "b", "score": 50}, 30: {"id": 30, "label": "b", "score": 30}})
    state3 = sorted(model.values(), key=lambda r: r["id"])
    ds.delete(pc.field("id") == 8)
    ds.delete(keys=[9, 99])
    for k in (8, 9):
        del model[k]
    again = ds.append(tbl(plain([40])), idempotency_key="run-1:batch-0")
    assert ds.append(tbl(plain([40])), idempotency_key="run-1:batch-0").id == again.id
    model[40] = plain([40])[0]
    expected = sorted(model.values(), key=lambda r: r["id"])

    fresh = open_catalog().dataset("frames")
    assert rows(fresh.read_all()) == expected
    assert len(fresh.manifest()) > 1, "max_rows_per_file=4 must spread the rows over several files"
    is_b = pc.field("label") == "b"
    assert rows(fresh.read_all(filter=is_b, columns=["id", "score"])) == [
        {"id": r["id"], "score": r["score"]} for r in expected if r["label"] == "b"
    ]
    assert fresh.count() == len(expected) and fresh.count(filter=is_b) == 4
    assert fresh.count(filter=pc.field("score") >= 20) == sum(r["score"] >= 20 for r in expected)
    assert fresh.take([30, 5, 404]).to_pylist() == [model[30], model[5]]
    batches = list(fresh.read(batch_size=3))
    assert all(b.num_rows <= 3 for b in batches) and sum(b.num_rows for b in batches) == len(expected)

    assert rows(fresh.read_all(version=s1.id)) == sorted(state1, key=lambda r: r["id"])
    assert fresh.count(version=s2.id) == 14 and fresh.count(filter=is_b, version=s1.id) == 2
    assert fresh.take([5], version=s1.id).to_pylist() == [plain([5])[0]]
    assert rows(fresh.read_all(version=fresh.snapshot(s3.id).created_at)) == state3
    assert fresh.snapshot(s1.id).operation == "append" and s3.parent_id == s2.id
    with pytest.raises(VersionNotFoundError):
        fresh.read_all(version=999)


def test_tags_versions_restore(cat: Catalog, open_catalog: Callable[[], Catalog]) -> None:
    ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    s1 = ds.append(tbl(plain([1, 2, 3])), message="initial", properties={"source": "test"})
    ds.tag("v1")
    s2 = ds.upsert(tbl(plain([2], label="fixed")))
    s3 = ds.delete(keys=[3])
    ds.tag("v2", version=s2.id)
    with pytest.raises(TagExistsError):
        ds.tag("v1", version=s2.id)
    state1, state2 = rows(ds.read_all(version=s1.id)), rows(ds.read_all(version=s2.id))

    fresh = open_catalog().dataset("frames")
    assert fresh.tags() == {"v1": s1.id, "v2": s2.id}
    assert rows(fresh.read_all(version="v1")) == state1 and rows(fresh.read_all(version="v2")) == state2
    v = fresh.versions()
    assert v.column("snapshot_id").to_pylist() == [0, s1.id, s2.id, s3.id]
    assert v.column("operation").to_pylist() == ["create", "append", "upsert", "delete"]
    assert v.column("tags").to_pylist() == [[], ["v1"], ["v2"], []]
    assert v.column("message").to_pylist()[1] == "initial"
    assert json.loads(v.column("properties")[1].as_py()) == {"source": "test"}

    fresh.untag("v2")
    assert open_catalog().dataset("frames").tags() == {"v1": s1.id}
    with pytest.raises(VersionNotFoundError):
        ds.read_all(version="v2")
    restored = ds.restore("v1")
    assert restored.id == s3.id + 1 and rows(ds.read_all()) == state1
    again = open_catalog().dataset("frames")
    assert rows(again.read_all()) == state1 and rows(again.read_all(version=s2.id)) == state2
    assert again.versions().num_rows == 5, "restore keeps the history"


def test_branches_and_merge(cat: Catalog, open_catalog: Callable[[], Catalog]) -> None:
    ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    ds.append(tbl(plain(range(6))))
    base = rows(ds.read_all())
    dev = ds.create_branch("relabel")
    dev.upsert(tbl(plain([1], label="dev")))
    dev.append(tbl(plain([10])))
    ds.append(tbl(plain([20])))  # main moves too: the merge is a real three-way merge

    fresh = open_catalog()
    assert set(fresh.dataset("frames").branches()) == {"main", "relabel"}
    assert rows(fresh.dataset("frames").read_all()) == base + plain([20])
    assert rows(fresh.dataset("frames", branch="relabel").read_all()) == [
        *plain([0]),
        *plain([1], label="dev"),
        *plain(range(2, 6)),
        *plain([10]),
    ]
    ds.merge("relabel")
    merged = [*plain([0]), *plain([1], label="dev"), *plain(range(2, 6)), *plain([10]), *plain([20])]
    assert rows(open_catalog().dataset("frames").read_all()) == merged

    dev.upsert(tbl(plain([2], label="dev")))
    ds.upsert(tbl(plain([2], label="main")))
    with pytest.raises(MergeConflictError) as conflict:
        ds.merge("relabel")
    assert conflict.value.keys == [2]
    ds.merge("relabel", strategy="theirs")
    assert open_catalog().dataset("frames").take([2]).to_pylist() == plain([2], label="dev")
    ds.delete_branch("relabel")
    assert list(open_catalog().dataset("frames").branches()) == ["main"]


def _changes(diff: pa.Table) -> list[tuple[str, int]]:
    return sorted(zip(diff.column("_change_type").to_pylist(), diff.column("id").to_pylist(), strict=True))


def test_diff_and_history(cat: Catalog, open_catalog: Callable[[], Catalog]) -> None:
    ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    s1 = ds.append(tbl(plain([1, 2, 3]))).id
    s2 = ds.upsert(tbl(plain([2], label="b") + plain([4]))).id
    s3 = ds.delete(keys=[1]).id
    fresh = open_catalog().dataset("frames")
    diff = fresh.diff(s1, s2)
    assert _changes(diff) == [("insert", 4), ("update_postimage", 2), ("update_preimage", 2)]
    post = diff.filter(pc.field("_change_type") == "update_postimage").select(["id", "label"]).to_pylist()
    assert post == [{"id": 2, "label": "b"}]
    assert _changes(fresh.diff(s2, s1)) == [("delete", 4), ("update_postimage", 2), ("update_preimage", 2)]
    assert _changes(fresh.diff(s2, s3)) == [("delete", 1)] and fresh.diff(s2, s2).num_rows == 0
    whole = [("delete", 1), ("insert", 4), ("update_postimage", 2), ("update_preimage", 2)]
    assert _changes(fresh.diff(s1, s3)) == whole and _changes(fresh.diff(s1)) == whole
    history = fresh.history(2)
    assert history.column("_snapshot_id").to_pylist() == [s2, s1]
    assert history.column("_change_type").to_pylist() == ["update", "insert"]
    assert history.column("label").to_pylist() == ["b", "a"]
    assert fresh.history(1).column("_change_type").to_pylist() == ["delete", "insert"]


def test_diff_over_rollups(cat: Catalog, open_catalog: Callable[[], Catalog], monkeypatch: pytest.MonkeyPatch) -> None:
    """Roll-ups at every other commit (nested 2, 4, 8): stored beside the commits' files, read by a fresh
    handle's diffs, kept by vacuum while their snapshot is live."""
    monkeypatch.setattr(rollups, "LEVELS", (2, 4, 8))
    ds = cat.create_dataset("ds", ROLLUP_SCHEMA, ["id"], options=WriteOptions(log_row_images=True))
    for step in range(21):
        edit(ds, step)
    assert set(ds.snapshot(16).summary[ROLLUPS]) == {"2", "4", "8"}
    fresh = open_catalog().dataset("ds")
    for start, end in [(0, 21), (1, 16), (3, 20), (9, 2)]:
        assert diff_rows(fresh, start, end) == expected_diff(fresh, start, end), (start, end)
    fresh.expire(keep_last=6)
    fresh.vacuum(grace_period=timedelta(0))
    fresh.validate()
    assert diff_rows(fresh, 16, 21) == expected_diff(fresh, 16, 21)


def test_compact_expire_vacuum_validate(
    moto_s3: S3Server, s3_uri: str, cat: Catalog, open_catalog: Callable[[], Catalog]
) -> None:
    ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"], options=WriteOptions(max_rows_per_file=4))
    for start in range(0, 20, 2):
        ds.append(tbl(plain(range(start, start + 2))))
    ds.delete(keys=[0, 3, 6])
    ds.upsert(tbl(plain([1, 7], label="b")))
    expected = rows(ds.read_all())
    files_before = len(ds.manifest())

    compacted = ds.compact(target_rows=100)
    assert compacted.operation == "compact" and len(ds.manifest()) < files_before
    assert rows(open_catalog().dataset("frames").read_all()) == expected
    assert ds.validate().problems == []

    expired = ds.expire(keep_last=1)
    assert expired.expired, "older snapshots must be expired"
    objects_before = s3_keys(moto_s3, s3_uri, "frames")
    stats = ds.vacuum(grace_period=timedelta(0))
    assert stats.files_removed > 0 and stats.bytes_removed > 0
    objects_after = s3_keys(moto_s3, s3_uri, "frames")
    assert set(stats.removed) == set(objects_before) - set(objects_after)
    assert ds.vacuum(grace_period=timedelta(0)).files_removed == 0

    fresh = open_catalog().dataset("frames")
    report = fresh.validate()
    assert report.problems == [] and report.snapshots == fresh.versions().num_rows
    assert rows(fresh.read_all()) == expected
    with pytest.raises(VersionNotFoundError):
        fresh.read_all(version=1)


# ----- record fields -----------------------------------------------------------------------------------


def test_record_fields_round_trip(
    moto_s3: S3Server, s3_uri: str, cat: Catalog, open_catalog: Callable[[], Catalog], record_cache: Path
) -> None:
    big = os.urandom(BIG)
    blobs = {1: b"", 2: b"\x07", 3: big, 4: None}
    ds = cat.create_dataset("media", MEDIA, primary_keys=["id"], record_fields=["image"])
    ds.append(tbl([{"id": k, "label": "big" if k == 3 else "small", "image": v} for k, v in blobs.items()], MEDIA))

    fresh = open_catalog().dataset("media")
    assert fresh.read_all().column_names == ["id", "label"]
    assert cached_files(record_cache) == {}, "reads without record fields must not fetch records"
    got = fresh.read_all(columns=["id", "image"])
    assert {r["id"]: r["image"] for r in got.to_pylist()} == blobs
    cached = cached_files(record_cache)
    remote = {k.replace("/", "_"): v for k, v in s3_keys(moto_s3, s3_uri, "media").items()}  # cache naming
    assert cached and set(cached) <= set(remote), "records must be read through the local cache directory"
    assert all(cached[name] == remote[name] for name in cached), "cached files must have their S3 size"
    assert fresh.take([3], columns=["image"]).column("image")[0].as_py() == big
    assert fresh.read_all(filter=pc.field("label") == "big", columns=["image"]).column("image")[0].as_py() == big

    ds.upsert(tbl([{"id": 3, "label": "small", "image": b"z"}, {"id": 5, "label": "new", "image": b""}], MEDIA))
    ds.delete(keys=[2])
    blobs.update({3: b"z", 5: b""})
    del blobs[2]
    ds.compact(target_rows=100)
    ds.expire(keep_last=1)
    ds.vacuum(grace_period=timedelta(0))
    assert max(s3_keys(moto_s3, s3_uri, "media").values()) < BIG, "the replaced 20 MB record must be reclaimed"
    again = open_catalog().dataset("media")
    assert again.validate().problems == []
    assert {r["id"]: r["image"] for r in again.read_all(columns=["id", "image"]).to_pylist()} == blobs


def _blob_dataset(cat: Catalog, n: int, size: int) -> tuple[Dataset, dict[int, bytes]]:
    """n rows of incompressible `size`-byte blobs, each in its own record file."""
    ds = cat.create_dataset(
        "media", MEDIA, primary_keys=["id"], record_fields=["image"], options=WriteOptions(max_record_file_bytes=1)
    )
    blobs = {i: os.urandom(size) for i in range(n)}
    ds.append(tbl([{"id": k, "label": "x", "image": v} for k, v in blobs.items()], MEDIA))
    assert sum(len(r) for r in ds.manifest().column("records").to_pylist()) == n
    return ds, blobs


def test_record_cache_is_bounded(cat: Catalog, open_cached: Callable[[Path, int], Dataset], tmp_path: Path) -> None:
    _ds, blobs = _blob_dataset(cat, n=8, size=300_000)
    cache, limit = tmp_path / "cache", 1_000_000  # holds two of the eight record files
    reader = open_cached(cache, limit)
    downloaded: set[str] = set()
    for key in list(blobs) * 2:
        assert reader.take([key], columns=["image"]).column("image")[0].as_py() == blobs[key]
        files = cached_files(cache)
        downloaded |= set(files)
        assert sum(files.values()) <= limit, f"cache holds {sum(files.values())} bytes, limit {limit}"
    assert len(downloaded) == len(blobs) and sum(cached_files(cache).values()) > 0

    # A cached file with the wrong size (a torn download, a disk error) is fetched again.
    victim = next(p for p in cache.rglob("*.array_record"))
    victim.write_bytes(victim.read_bytes()[:1000])
    second = open_cached(cache, limit)
    for key in blobs:
        assert second.take([key], columns=["image"]).column("image")[0].as_py() == blobs[key]


def test_read_more_records_than_the_cache_holds_at_once(
    cat: Catalog, open_cached: Callable[[Path, int], Dataset], tmp_path: Path
) -> None:
    _ds, blobs = _blob_dataset(cat, n=16, size=300_000)
    for attempt in range(3):
        reader = open_cached(tmp_path / f"cache{attempt}", 1_000_000)
        got = reader.read_all(columns=["id", "image"])  # 16 files, read in parallel
        assert {r["id"]: r["image"] for r in got.to_pylist()} == blobs


def test_record_file_larger_than_the_cache(
    cat: Catalog, open_cached: Callable[[Path, int], Dataset], tmp_path: Path
) -> None:
    _ds, blobs = _blob_dataset(cat, n=1, size=300_000)
    reader = open_cached(tmp_path / "cache", 100_000)
    assert reader.take([0], columns=["image"]).column("image")[0].as_py() == blobs[0]


# ----- a catalog synced from S3 to local disk ----------------------------------------------------------


def test_catalog_synced_to_local_disk_reads_identically(
    moto_s3: S3Server, s3_uri: str, cat: Catalog, tmp_path: Path
) -> None:
    media = cat.create_dataset("media", MEDIA, primary_keys=["id"], record_fields=["image"])
    media.append(tbl([{"id": i, "label": "a", "image": bytes([i]) * (i * 1000)} for i in range(6)], MEDIA))
    media.tag("v1")
    media.create_branch("dev").upsert(tbl([{"id": 2, "label": "dev", "image": b"dev"}], MEDIA))
    media.delete(keys=[4])
    frames = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    frames.append(tbl(plain(range(5))))
    frames.upsert(tbl(plain([1], label="b")))

    local = Catalog(download_catalog(moto_s3, s3_uri, tmp_path / "laptop"))
    metadata = [*(tmp_path / "laptop").rglob("*.json")]  # catalog file, dataset metadata, log entries, tags
    assert len(metadata) > 10
    for path in metadata:
        text = path.read_text()
        assert "s3://" not in text and s3_uri.split("/")[2] not in text, f"{path} names the bucket"
    assert local.datasets() == cat.datasets() == ["frames", "media"]
    for name in local.datasets():
        remote, copy = cat.dataset(name), local.dataset(name)
        assert copy.validate().problems == []
        assert copy.versions().equals(remote.versions())
        assert copy.tags() == remote.tags() and copy.branches() == remote.branches()
        columns = remote.schema.names
        for sid in remote.versions().column("snapshot_id").to_pylist():
            assert rows(copy.read_all(columns=columns, version=sid)) == rows(
                remote.read_all(columns=columns, version=sid)
            )
            paths = copy.manifest(sid).column("path").to_pylist()
            assert all(not p.startswith(("/", "s3:")) for p in paths)
        assert copy.diff(0).equals(remote.diff(0)) and copy.history(1).equals(remote.history(1))
    assert local.dataset("media", branch="dev").take([2], columns=["image"]).to_pylist() == [{"image": b"dev"}]


# ----- two processes committing to one S3 dataset ------------------------------------------------------


Report = tuple[int, str, list[Row], int | str]  # seq, operation, rows, snapshot id / CONFLICT / error


def _s3_writer(
    uri: str,
    race_uri: str,
    options: dict[str, Any],
    worker: int,
    commits: int,
    shared: list[int],
    barrier: Barrier,
    out: Queue[tuple[int, list[int], list[Report]]],
) -> None:
    """Spawned child: first race the other worker for the same raw objects with put_if_absent, then alternate
    appends of its own keys with upserts of keys both workers upsert."""
    import random

    ds = Catalog(uri, **options).dataset("frames")
    store = open_store(race_uri, **options)
    barrier.wait()
    order = range(RACE_OBJECTS) if worker == 0 else reversed(range(RACE_OBJECTS))  # they meet and collide
    won = [k for k in order if store.put_if_absent(f"{k:03d}.json", f"worker {worker}".encode())]
    rng = random.Random(worker)
    reports: list[Report] = []
    for seq in range(commits):
        # Every round starts together, so the commits race even when a loaded machine would run one worker's
        # whole loop before the other's first step.
        barrier.wait()
        if seq % 2 == 0:
            operation = "append"
            data = plain(range(1000 * (worker + 1) + 10 * seq, 1000 * (worker + 1) + 10 * seq + 3), f"w{worker}", seq)
        else:
            operation = "upsert"
            data = plain(sorted(rng.sample(shared, 2)), f"w{worker}s{seq}", seq)
        outcome: int | str
        try:
            outcome = getattr(ds, operation)(tbl(data)).id
        except CommitConflictError:
            outcome = CONFLICT
        except Exception as exc:  # reported, not raised: the test asserts there are none
            outcome = f"{type(exc).__name__}: {exc}"
        reports.append((seq, operation, data, outcome))
    out.put((worker, won, reports))


def test_two_processes_commit_concurrently(
    moto_s3: S3Server, s3_uri: str, cat: Catalog, open_catalog: Callable[[], Catalog]
) -> None:
    workers, commits = 2, 15
    shared = list(range(10))  # 0-4 exist before the race, 5-9 are new keys both workers may upsert
    ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
    seeded = plain(range(5), "seed", -1)
    ds.append(tbl(seeded))
    race_uri = s3_uri.rsplit("/", 1)[0] + "/race"  # beside the catalog

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_s3_writer, args=(s3_uri, race_uri, moto_s3.options, w, commits, shared, barrier, out))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        results = {w: (won, reports) for w, won, reports in (out.get(timeout=300) for _ in procs)}
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * workers

    # The raw conditional put: no object has two creators, and each holds its creator's body. (An object
    # may have none: a put that landed but whose response was lost is retried by botocore and gets 412.)
    won = {w: set(results[w][0]) for w in results}
    where = f"put_if_absent winners {won}; server log {moto_s3.log_path}"
    assert not won[0] & won[1], f"two processes both created the same object: {where}"
    assert len(won[0] | won[1]) >= RACE_OBJECTS - 2 and won[0] and won[1], where
    race = open_store(race_uri, **moto_s3.options)
    assert {f.path for f in race.list_files()} == {f"{k:03d}.json" for k in range(RACE_OBJECTS)}
    assert all(race.read_bytes(f"{k:03d}.json") == f"worker {w}".encode() for w in won for k in won[w]), where

    reports = [(w, *r) for w, (_won, rs) in sorted(results.items()) for r in rs]
    assert len(reports) == workers * commits
    errors = [r for r in reports if isinstance(r[4], str) and r[4] != CONFLICT]
    assert errors == [], f"unexpected errors: {errors}"
    lost = [r for r in reports if r[2] == "append" and not isinstance(r[4], int)]
    assert lost == [], f"appends must rebase, never conflict: {lost}"
    committed = sorted((r for r in reports if isinstance(r[4], int)), key=lambda r: r[4])
    ids = [r[4] for r in committed]
    assert len(set(ids)) == len(ids), "two commits claimed the same snapshot id"
    order = [r[0] for r in committed]  # which worker made each successive snapshot
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 2, f"the workers did not race (snapshots by worker: {order})"

    fresh = open_catalog().dataset("frames")
    final = fresh.read_all()
    keys = final.column("id").to_pylist()
    assert len(keys) == len(set(keys)), "duplicate primary keys after concurrent upserts"
    expected = {r["id"]: r for r in seeded}
    for _w, _seq, _op, data, _sid in committed:  # replayed in commit order, later commits win
        expected.update({r["id"]: r for r in data})
    assert rows(final) == sorted(expected.values(), key=lambda r: r["id"])

    versions = fresh.versions()
    n = 2 + len(committed)  # create, seed, then every successful commit
    assert versions.column("snapshot_id").to_pylist() == list(range(n)), "the log must be one dense chain"
    assert versions.column("parent_id").to_pylist() == [None, *range(n - 1)]
    assert set(versions.column("branch").to_pylist()) == {"main"}
    log = sorted(s3_keys(moto_s3, s3_uri, "frames/_log"))
    assert [int(k.split(".")[0]) for k in log] == list(range(n)), f"log objects on S3: {log}"
    state = {r["id"] for r in seeded}
    for _w, _seq, _op, data, sid in committed:  # every snapshot holds exactly what was committed up to it
        state |= {r["id"] for r in data}
        assert fresh.count(version=sid) == len(state)
    report = fresh.validate()
    assert report.problems == [] and report.snapshots == n


# ----- errors ------------------------------------------------------------------------------------------


def _reset_auth(endpoint: str, count: str) -> None:
    """Turn moto's authentication on ("0": check every request from now on) or off ("inf")."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    with opener.open(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def authenticating_s3(start_moto_server: StartServer) -> Iterator[tuple[str, dict[str, Any]]]:
    """A private moto server that checks credentials; yields a bucket URI and valid catalog options."""
    import boto3

    with start_moto_server() as endpoint:
        kwargs = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        boto3.client("s3", **kwargs).create_bucket(Bucket="lh-auth")
        iam = boto3.client("iam", **kwargs)
        iam.create_user(UserName="labelhouse")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="labelhouse", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="labelhouse")["AccessKey"]
        _reset_auth(endpoint, "0")
        options = {
            "endpoint_url": endpoint,
            "access_key": key["AccessKeyId"],
            "secret_key": key["SecretAccessKey"],
            "region": "us-east-1",
        }
        yield "s3://lh-auth/lake", options


def _assert_clean_access_error(exc: pytest.ExceptionInfo[StoreAccessError], uri: str) -> None:
    message = str(exc.value)
    assert uri in message, f"the message must name the catalog URI: {message}"
    assert "Traceback" not in message and "\n" not in message


def test_wrong_credentials(authenticating_s3: tuple[str, dict[str, Any]]) -> None:
    uri, good = authenticating_s3
    ds = Catalog(uri, **good).create_dataset("frames", SCHEMA, primary_keys=["id"])
    ds.append(tbl(plain([1])))
    assert Catalog(uri, **good).dataset("frames").count() == 1, "valid credentials work with checks on"

    for bad in ({**good, "secret_key": "not-the-secret"}, {**good, "access_key": "AKIAIOSFODNN7NOTREAL"}):
        with pytest.raises(StoreAccessError) as exc:
            Catalog(uri, **bad).dataset("frames").read_all()
        _assert_clean_access_error(exc, uri)
        assert "credentials" in str(exc.value)


def test_unreachable_endpoint(moto_s3: S3Server, start_moto_server: StartServer) -> None:
    import boto3

    uri = "s3://lh-gone/lake"
    with start_moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lh-gone")
        options = {**moto_s3.options, "endpoint_url": endpoint}
        cat = Catalog(uri, **options)
        ds = cat.create_dataset("frames", SCHEMA, primary_keys=["id"])
        ds.append(tbl(plain([1, 2])))
    # Nothing listens on that port any more: opening a catalog, and every call on one already open, fail
    # with a StoreAccessError naming the catalog.
    with pytest.raises(StoreAccessError) as exc:
        Catalog(uri, **options)
    _assert_clean_access_error(exc, uri)
    calls: list[Callable[[], Any]] = [
        ds.read_all,
        ds.count,
        lambda: ds.append(tbl(plain([3]))),
        ds.versions,
        lambda: ds.tag("t"),
        ds.validate,
        cat.datasets,
        lambda: cat.create_dataset("other", SCHEMA, primary_keys=["id"]),
    ]
    for call in calls:
        with pytest.raises(StoreAccessError) as exc:
            call()
        assert uri in str(exc.value)


def test_missing_bucket(moto_s3: S3Server) -> None:
    uri = "s3://lh-no-such-bucket/lake"
    with pytest.raises(StoreAccessError) as exc:
        Catalog(uri, **moto_s3.options)
    _assert_clean_access_error(exc, uri)
    assert "NoSuchBucket" in str(exc.value) or "does not exist" in str(exc.value)

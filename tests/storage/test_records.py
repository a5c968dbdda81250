"""Record files: written beside their final name and renamed in, several per commit, none left half-written."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from storage import Catalog, WriteOptions
from storage.errors import InvalidInputError
from storage.io import LocalStore, ObjectStore
from storage.io.local import staging_path
from storage.records import decode_columns, encode_rows, record_codec

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("image", pa.binary()),
        ("caption", pa.large_string()),
        ("boxes", pa.list_(pa.float32())),
    ]
)


def rows(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    data = {
        "id": list(range(n)),
        "image": [None if i % 7 == 3 else rng.bytes(i % 5 * 1000) for i in range(n)],
        "caption": [None if i % 4 == 1 else f"caption é {i}" for i in range(n)],
        "boxes": [None if i % 3 == 2 else [float(i), 0.5] for i in range(n)],
    }
    # Several batches and a slice, so chunk boundaries and offsets into shared buffers are exercised.
    table = pa.Table.from_pylist([dict(zip(data, v, strict=True)) for v in zip(*data.values(), strict=True)], SCHEMA)
    return pa.Table.from_batches(table.to_batches(max_chunksize=7)).slice(1)


def test_records_round_trip_through_arrow_buffers() -> None:
    table = rows(60).select(["image", "caption", "boxes"])
    records = list(encode_rows(table))
    assert records[table.column("image").to_pylist().index(None)] is not None  # other fields are set
    assert decode_columns(records, table.schema) == [c.to_pylist() for c in table.columns]


def test_several_record_files_per_commit_read_back_and_leave_no_staged_files(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    ds = cat.create_dataset(
        "media",
        SCHEMA,
        ["id"],
        record_fields=["image", "caption", "boxes"],
        options=WriteOptions(max_record_file_bytes=5000),
    )
    table = rows(60)
    ds.append(table)
    record_files = [p for files in ds.manifest().column("records").to_pylist() for p in files]
    assert len(record_files) > 3
    names = os.listdir(tmp_path / "media" / "records")
    assert sorted(names) == sorted(p.rsplit("/", 1)[1] for p in record_files)  # no `.tmp-` leftovers
    expected = table.to_pylist()
    ra = ds.random_access()
    assert ra.__getitems__(list(range(len(ra)))[::-1]) == expected[::-1]
    assert [ra[i] for i in range(len(ra))] == expected
    assert ds.read_all(columns=SCHEMA.names).to_pylist() == expected


def test_a_staged_file_is_renamed_into_place_not_copied(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    staged = staging_path(store, "records/a.bin")
    Path(staged).write_bytes(b"abc")
    inode = os.stat(staged).st_ino
    assert store.put_file("records/a.bin", staged) == 3
    assert os.stat(tmp_path / "records" / "a.bin").st_ino == inode and not os.path.exists(staged)


class FailingPut:
    """Forwards to a store, failing the `nth` put_file (0-based)."""

    def __init__(self, inner: ObjectStore, nth: int, calls: list[int] | None = None) -> None:
        self._inner, self._nth, self._calls = inner, nth, calls if calls is not None else []

    def child(self, prefix: str) -> ObjectStore:
        return FailingPut(self._inner.child(prefix), self._nth, self._calls)  # type: ignore[return-value]

    def put_file(self, path: str, local_file: str) -> int:
        self._calls.append(1)
        if len(self._calls) - 1 == self._nth:
            raise OSError(f"injected: put_file {path}")
        return self._inner.put_file(path, local_file)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("nth", [0, 2])
def test_a_failed_put_leaves_the_dataset_as_it_was_and_vacuum_removes_the_rest(tmp_path: Path, nth: int) -> None:
    Catalog(tmp_path).create_dataset(
        "media",
        SCHEMA,
        ["id"],
        record_fields=["image", "caption", "boxes"],
        options=WriteOptions(max_record_file_bytes=5000),
    )
    ds = Catalog(tmp_path, wrap_store=lambda s: FailingPut(s, nth)).dataset("media")  # type: ignore[arg-type,return-value]
    with pytest.raises(OSError, match="injected"):
        ds.append(rows(60))
    records = tmp_path / "media" / "records"
    leftovers = os.listdir(records) if records.exists() else []
    assert not [n for n in leftovers if n.startswith(".tmp-")]  # staged copies are removed on failure
    again = Catalog(tmp_path).dataset("media")
    assert again.read_all().num_rows == 0
    # A staged file a killed writer left behind, and the files put before the failure, go with vacuum().
    (records).mkdir(exist_ok=True)
    (records / ".tmp-deadbeef").write_bytes(b"half")
    old = 1_000_000_000
    for name in os.listdir(records):
        os.utime(records / name, (old, old))
    again.vacuum(grace_period=timedelta(seconds=1))
    assert not records.exists() or os.listdir(records) == []


def _record_bytes(catalog: Catalog, name: str) -> int:
    root = Path(catalog.uri) / name / "records"
    return sum(p.stat().st_size for p in root.iterdir())


@pytest.mark.parametrize(
    ("compression", "repetitive_shrinks"), [("auto", True), ("snappy", True), ("uncompressed", False)]
)
def test_record_files_are_compressed_only_when_their_records_compress(
    tmp_path: Path, compression: str, repetitive_shrinks: bool
) -> None:
    catalog = Catalog(tmp_path / "lake")
    schema = pa.schema([("id", pa.int64()), ("image", pa.binary())])
    raw = 40 * 20_000
    tables = {
        "repetitive": pa.table({"id": range(40), "image": [b"cat box 12 34 " * 1500] * 40}, schema),
        "random": pa.table({"id": range(40), "image": [os.urandom(20_000) for _ in range(40)]}, schema),
    }
    for name, table in tables.items():
        ds = catalog.create_dataset(
            name, schema, ["id"], record_fields=["image"], options=WriteOptions(record_compression=compression)
        )
        ds.append(table)
        assert ds.read_all(columns=["id", "image"]).sort_by("id").equals(table)
    assert (_record_bytes(catalog, "repetitive") < raw / 4) is repetitive_shrinks
    assert _record_bytes(catalog, "random") >= raw  # random bytes never shrink, whatever the codec


def test_auto_picks_the_codec_from_a_sample_of_the_first_record() -> None:
    assert record_codec("auto", b"label cat " * 10_000) == "snappy"
    assert record_codec("auto", os.urandom(100_000)) == "uncompressed"
    assert record_codec("auto", b"") == "uncompressed"
    assert record_codec("uncompressed", b"label cat " * 10_000) == "uncompressed"


def test_an_unknown_record_codec_is_refused_with_the_choices() -> None:
    with pytest.raises(InvalidInputError, match=r"record_compression='gzip'.*auto, snappy, uncompressed"):
        WriteOptions(record_compression="gzip")


def _stored_records(root: Path) -> list[bytes]:
    from array_record.python.array_record_module import ArrayRecordReader

    out: list[bytes] = []
    for name in sorted(os.listdir(root / "records")):
        reader = ArrayRecordReader(str(root / "records" / name), "readahead_buffer_size:0,max_parallelism:0")
        out += reader.read(list(range(reader.num_records())))
        reader.close()
    return out


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary(), pa.string(), pa.large_string()])
def test_a_lone_binary_or_string_record_field_is_stored_bare(tmp_path: Path, kind: pa.DataType) -> None:
    """Its records are the values themselves; null (no record) and empty (an empty record) stay apart."""
    schema = pa.schema([("id", pa.int64()), ("blob", kind)])
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    values: list[Any] = ["é" * i if i % 3 else None for i in range(12)] + [""]
    if not text:
        values = [None if v is None else v.encode() for v in values]
    table = pa.table({"id": list(range(len(values))), "blob": pa.array(values, kind)}, schema=schema)
    ds = Catalog(tmp_path).create_dataset("bare", schema, ["id"], record_fields=["blob"])
    ds.append(pa.Table.from_batches(table.to_batches(max_chunksize=5)))
    stored = [v if isinstance(v, bytes) else v.encode() for v in values if v is not None]
    assert _stored_records(tmp_path / "bare") == stored
    ra = ds.random_access()
    assert ra.__getitems__(list(range(len(values)))[::-1]) == table.to_pylist()[::-1]
    assert [ra[i]["blob"] for i in range(len(values))] == values
    assert ds.read_all(columns=schema.names).sort_by("id").equals(table)


def test_a_format_1_dataset_keeps_framing_its_records(tmp_path: Path) -> None:
    """A dataset created before bare records existed frames the records it writes after an upgrade too, so
    its old and new record files read the same way."""
    schema = pa.schema([("id", pa.int64()), ("blob", pa.binary())])
    Catalog(tmp_path).create_dataset("old", schema, ["id"], record_fields=["blob"])
    meta_path = tmp_path / "old" / "_meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["format_version"] == 2
    meta_path.write_text(json.dumps({**meta, "format_version": 1}))
    ds = Catalog(tmp_path).dataset("old")
    table = pa.table({"id": [1, 2, 3], "blob": [b"abc", None, b""]}, schema=schema)
    ds.append(table)
    stored = _stored_records(tmp_path / "old")
    assert len(stored) == 2 and all(record not in (b"abc", b"") for record in stored)  # headers in front
    assert ds.random_access().__getitems__([0, 1, 2]) == table.to_pylist()
    assert json.loads(meta_path.read_text())["format_version"] == 1

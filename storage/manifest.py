"""Manifests: one Parquet file per snapshot listing its live data files, deletion vectors and statistics."""

from __future__ import annotations

import io
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import dv
from .errors import CorruptDatasetError
from .formats import DV_DIR, MANIFEST_DIR
from .io import ObjectStore
from .stats import stat_fields

T = TypeVar("T")

BASE_FIELDS = [
    pa.field("path", pa.string(), nullable=False),
    pa.field("rows", pa.int64(), nullable=False),
    pa.field("deleted", pa.int64(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("dv", pa.string()),
    pa.field("dv_bytes", pa.int64()),
    pa.field("records", pa.list_(pa.string())),
]


def manifest_schema(schema: pa.Schema, record_fields: list[str]) -> pa.Schema:
    """The manifest schema of a dataset: file columns plus min/max/null statistics per scalar column."""
    return pa.schema(BASE_FIELDS + stat_fields(schema, set(record_fields)))


def empty(schema: pa.Schema) -> pa.Table:
    """A manifest with no files."""
    return schema.empty_table()


def encode(table: pa.Table) -> tuple[str, bytes]:
    """A fresh path for a manifest, and its bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return f"{MANIFEST_DIR}/{uuid.uuid4().hex}.parquet", sink.getvalue()


def write(store: ObjectStore, table: pa.Table) -> str:
    """Store a manifest under a fresh name and return its path."""
    path, data = encode(table)
    store.write_bytes(path, data)
    return path


class _Recent(Generic[T]):
    """The last `size` immutable files read or written, by (store, path): a written file is never changed."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: ObjectStore, path: str, load: Callable[[ObjectStore, str], T]) -> T:
        key = (store.uri, path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load(store, path)
        self.put(store, path, value)
        return value

    def put(self, store: ObjectStore, path: str, value: T) -> None:
        with self._lock:
            self._items[(store.uri, path)] = value
            self._items.move_to_end((store.uri, path))
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_MANIFESTS: _Recent[pa.Table] = _Recent(256)
_VECTORS: _Recent[dv.Positions] = _Recent(4096)


def remember(store: ObjectStore, path: str, table: pa.Table, vectors: Mapping[str, bytes]) -> None:
    """Cache a manifest and its new deletion vectors just stored, so the next commit need not read them back."""
    _MANIFESTS.put(store, path, table)
    for dv_path, data in vectors.items():
        _VECTORS.put(store, dv_path, dv.decode(data, f"{store.uri}/{dv_path}"))


def load(store: ObjectStore, path: str) -> pa.Table:
    """Read a manifest from the store, bypassing the cache (validate() checks what is really there)."""
    store_uri = store.uri
    try:
        data = store.read_bytes(path)
    except FileNotFoundError as exc:
        raise CorruptDatasetError(
            f"{store_uri}/{path}: manifest is missing; the snapshot was expired or its files deleted by hand"
        ) from exc
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(f"{store_uri}/{path}: manifest is unreadable ({exc})") from exc


def read(store: ObjectStore, path: str) -> pa.Table:
    """Load a manifest (immutable, so cached per process)."""
    return _MANIFESTS.get(store, path, load)


def read_dv(store: ObjectStore, path: str) -> dv.Positions:
    """Load a deletion vector."""
    return _VECTORS.get(store, path, load_dv)


def load_dv(store: ObjectStore, path: str) -> dv.Positions:
    """Read a deletion vector from the store, bypassing the cache."""
    store_uri = store.uri
    try:
        data = store.read_bytes(path)
    except FileNotFoundError as exc:
        raise CorruptDatasetError(f"{store_uri}/{path}: deletion vector is missing; run ds.validate()") from exc
    return dv.decode(data, f"{store_uri}/{path}")


def deleted_positions(store: ObjectStore, row: Mapping[str, Any]) -> dv.Positions:
    """The deleted positions of one manifest row (empty when it has no deletion vector)."""
    if row.get("dv"):
        return read_dv(store, str(row["dv"]))
    return np.empty(0, dtype=np.int64)


def apply(
    store: ObjectStore,
    base: pa.Table,
    *,
    deletes: Mapping[str, dv.Positions],
    removes: set[str],
    added: pa.Table | None,
) -> tuple[pa.Table, dict[str, bytes]]:
    """A new manifest: `base` minus removed files, plus deletions merged into deletion vectors, plus added.

    Returns the table and the new deletion vectors (path -> bytes) for the caller to store: it writes them
    together with the manifest. Files whose rows are all deleted drop out.
    """
    rows = base.to_pylist()
    index = {r["path"]: i for i, r in enumerate(rows)}
    missing = sorted(set(deletes) - set(index))
    if missing:
        raise CorruptDatasetError(f"deletions target files not in the snapshot: {missing[:5]}")
    vectors: dict[str, bytes] = {}
    drop: set[str] = set(removes)
    for path, positions in deletes.items():
        if len(positions) == 0:
            continue
        row = rows[index[path]]
        merged = dv.union(deleted_positions(store, row), positions)
        if len(merged) >= row["rows"]:
            drop.add(path)
            continue
        data = dv.encode(merged)
        dv_path = f"{DV_DIR}/{uuid.uuid4().hex}.dv"
        vectors[dv_path] = data
        rows[index[path]] = {**row, "dv": dv_path, "dv_bytes": len(data), "deleted": len(merged)}
    kept = [r for r in rows if r["path"] not in drop]
    table = pa.Table.from_pylist(kept, schema=base.schema)
    if added is not None and added.num_rows:
        table = pa.concat_tables([table, added.select(base.schema.names).cast(base.schema)])
    return table, vectors


def live_rows(table: pa.Table) -> int:
    """Rows visible in a manifest (physical rows minus deleted)."""
    return int(sum(table.column("rows").to_pylist()) - sum(table.column("deleted").to_pylist()))

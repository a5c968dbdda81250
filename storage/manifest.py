"""Manifests: one Parquet file per snapshot listing its live data files, deletion vectors and statistics."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import dv
from .errors import CorruptDatasetError
from .formats import DV_DIR, MANIFEST_DIR
from .io import ObjectStore
from .stats import stat_fields

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


def write(store: ObjectStore, table: pa.Table) -> str:
    """Store a manifest under a fresh name and return its path."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    path = f"{MANIFEST_DIR}/{uuid.uuid4().hex}.parquet"
    store.write_bytes(path, sink.getvalue())
    return path


@lru_cache(maxsize=256)
def _read_cached(store_uri: str, store: ObjectStore, path: str) -> pa.Table:
    return load(store, path)


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
    return _read_cached(store.uri, store, path)


def read_dv(store: ObjectStore, path: str) -> dv.Positions:
    """Load a deletion vector."""
    return _read_dv_cached(store.uri, store, path)


@lru_cache(maxsize=4096)
def _read_dv_cached(store_uri: str, store: ObjectStore, path: str) -> dv.Positions:
    return load_dv(store, path)


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
) -> tuple[pa.Table, list[str], int]:
    """A new manifest: `base` minus removed files, plus deletions merged into deletion vectors, plus added.

    Returns the table, the deletion vectors written and their bytes. Files whose rows are all deleted drop out.
    """
    rows = base.to_pylist()
    index = {r["path"]: i for i, r in enumerate(rows)}
    missing = sorted(set(deletes) - set(index))
    if missing:
        raise CorruptDatasetError(f"deletions target files not in the snapshot: {missing[:5]}")
    written = 0
    dv_paths: list[str] = []
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
        store.write_bytes(dv_path, data)
        dv_paths.append(dv_path)
        written += len(data)
        rows[index[path]] = {**row, "dv": dv_path, "dv_bytes": len(data), "deleted": len(merged)}
    kept = [r for r in rows if r["path"] not in drop]
    table = pa.Table.from_pylist(kept, schema=base.schema)
    if added is not None and added.num_rows:
        table = pa.concat_tables([table, added.select(base.schema.names).cast(base.schema)])
    return table, dv_paths, written


def live_rows(table: pa.Table) -> int:
    """Rows visible in a manifest (physical rows minus deleted)."""
    return int(sum(table.column("rows").to_pylist()) - sum(table.column("deleted").to_pylist()))

"""The change log of one commit: which keys it inserted, updated and deleted, and where old and new rows live."""

from __future__ import annotations

import io
import uuid
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import CorruptDatasetError
from .formats import CHANGES_DIR
from .io import ObjectStore

INSERT = "insert"
UPDATE = "update"
DELETE = "delete"
MOVE = "move"  # compaction relocated the row; its content is unchanged

CHANGE_FIELDS = [
    pa.field("_change", pa.string(), nullable=False),
    pa.field("_old_file", pa.string()),
    pa.field("_old_pos", pa.int64()),
    pa.field("_new_file", pa.string()),
    pa.field("_new_pos", pa.int64()),
]


def change_schema(key_schema: pa.Schema) -> pa.Schema:
    """Key columns plus the change columns; keys are declared nullable so every commit's log has one schema."""
    return pa.schema([*(f.with_nullable(True) for f in key_schema), *CHANGE_FIELDS])


def build(
    keys: pa.Table,
    change: str,
    old_file: pa.Array,
    old_pos: pa.Array,
    new_file: pa.Array,
    new_pos: pa.Array,
) -> pa.Table:
    """A change table for `keys`, all with the same change type."""
    kind = pa.DictionaryArray.from_arrays(pa.array(np.zeros(keys.num_rows, np.int32)), pa.array([change]))
    cols = [*keys.columns, kind.cast(pa.string()), old_file, old_pos, new_file, new_pos]
    return pa.Table.from_arrays(cols, schema=change_schema(keys.schema))


def change_counts(table: pa.Table) -> dict[str, int]:
    """Rows per change type (every type present, zero if absent)."""
    counts = {INSERT: 0, UPDATE: 0, DELETE: 0, MOVE: 0}
    for item in pc.value_counts(table.column("_change")).to_pylist():
        counts[item["values"]] = item["counts"]
    return counts


def write(store: ObjectStore, table: pa.Table) -> str:
    """Store a change table and return its path."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    path = f"{CHANGES_DIR}/{uuid.uuid4().hex}.parquet"
    store.write_bytes(path, sink.getvalue())
    return path


def read(store: ObjectStore, path: str) -> pa.Table:
    """Load a change table (immutable, so cached per process)."""
    return _read_cached(store.uri, store, path)


@lru_cache(maxsize=1024)
def _read_cached(store_uri: str, store: ObjectStore, path: str) -> pa.Table:
    return load(store, path)


def load(store: ObjectStore, path: str) -> pa.Table:
    """Read a change table from the store, bypassing the cache."""
    store_uri = store.uri
    try:
        return pq.read_table(io.BytesIO(store.read_bytes(path)))
    except FileNotFoundError as exc:
        raise CorruptDatasetError(f"{store_uri}/{path}: change log is missing; run ds.validate()") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(f"{store_uri}/{path}: change log is unreadable ({exc})") from exc

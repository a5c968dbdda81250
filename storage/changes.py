"""The change log of one commit: which keys it inserted, updated and deleted, and where old and new rows live."""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
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
# Optional struct columns (WriteOptions.log_row_images): the stored columns of the row before an update or
# delete, and after an insert or update.
PRE, POST = "_pre", "_post"
IMAGES = (PRE, POST)


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


SMALL_LOG_ROWS = 16_384


def encode(table: pa.Table) -> tuple[str, bytes]:
    """A fresh path for a change table, and its bytes.

    Arrow IPC, not Parquet: a diff over many commits opens every log, and an IPC file opens and decodes in
    a fraction of the time a small Parquet file takes. Small logs stay uncompressed (decompression would
    cost more than it saves); large ones, mostly repeated file paths, are lz4-compressed.
    """
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression=None if table.num_rows <= SMALL_LOG_ROWS else "lz4")
    with ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return f"{CHANGES_DIR}/{uuid.uuid4().hex}.arrow", sink.getvalue().to_pybytes()


def write(store: ObjectStore, table: pa.Table) -> str:
    """Store a change table and return its path."""
    path, data = encode(table)
    store.write_bytes(path, data)
    return path


def read(store: ObjectStore, path: str) -> pa.Table:
    """Load a change table without its row images (immutable, so cached per process)."""
    return _read_cached(store.uri, store, path)


@lru_cache(maxsize=1024)
def _read_cached(store_uri: str, store: ObjectStore, path: str) -> pa.Table:
    table = load(store, path)
    return table.drop_columns([c for c in IMAGES if c in table.column_names])


def load(store: ObjectStore, path: str) -> pa.Table:
    """Read a change table from the store, bypassing the cache (Parquet logs of older commits too)."""
    store_uri = store.uri
    try:
        data = store.read_bytes(path)
        if path.endswith(".parquet"):
            return pq.read_table(io.BytesIO(data))
        return ipc.open_file(pa.py_buffer(data)).read_all()
    except FileNotFoundError as exc:
        raise CorruptDatasetError(f"{store_uri}/{path}: change log is missing; run ds.validate()") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(f"{store_uri}/{path}: change log is unreadable ({exc})") from exc


def image_at(store: ObjectStore, path: str, log: pa.Table, name: str, row: int) -> pa.Array | None:
    """The row image `name` (PRE or POST) of one row of a change log, as a one-row struct array, or None when
    the log did not record it; `log` is the log as read() returns it (its chunks are the file's batches).

    Only that image column of the batch holding the row is read: a large commit's images are large.
    """
    if path.endswith(".parquet"):  # logs of older commits record no images
        return None
    fs, root = store.arrow_fs()
    try:
        with fs.open_input_file(f"{root}/{path}") as source:
            index = ipc.open_file(source).schema.get_field_index(name)
            if index < 0:
                return None
            reader = ipc.open_file(source, options=ipc.IpcReadOptions(included_fields=[index]))
            lengths = np.cumsum([0, *(len(c) for c in log.column(0).chunks)])
            batch = int(np.searchsorted(lengths, row, side="right")) - 1
            if reader.num_record_batches != len(lengths) - 1:  # not laid out as read() saw it: read it all
                image = reader.read_all().column(0).combine_chunks().slice(row, 1)
            else:
                image = reader.get_batch(batch).column(0).slice(row - int(lengths[batch]), 1)
    except FileNotFoundError as exc:
        raise CorruptDatasetError(f"{store.uri}/{path}: change log is missing; run ds.validate()") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(f"{store.uri}/{path}: change log is unreadable ({exc})") from exc
    return None if image.null_count else image


def load_all(store: ObjectStore, paths: Sequence[str]) -> list[pa.Table]:
    """load() of many change tables; from an object store side by side (a diff over many commits opens each
    of them, and parallel gets take about as long as one). Local files are read in turn: each takes well
    under a millisecond, less than handing it to a thread."""
    if len(paths) < 2 or store.local_path(paths[0]) is not None:
        return [load(store, p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(len(paths), 8)) as pool:
        return list(pool.map(lambda path: load(store, path), paths))

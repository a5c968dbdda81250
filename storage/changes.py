"""The change log of one commit: which keys it inserted, updated and deleted, and where old and new rows live."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import CorruptDatasetError
from .formats import CHANGES_DIR
from .io import ObjectStore
from .lru import ByteLRU

T = TypeVar("T")

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


def first_letters(change: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Per row of a `_change` column, the first byte of its change type, which tells the four apart: read
    from the strings' buffers, a fifth of the time of comparing the column with each type."""
    parts = []
    for chunk in change.chunks:
        if len(chunk):
            offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk), chunk.offset * 4)
            parts.append(np.frombuffer(chunk.buffers()[2], np.uint8)[offsets])
    return np.concatenate(parts) if parts else np.empty(0, np.uint8)


def change_counts(table: pa.Table) -> dict[str, int]:
    """Rows per change type (every type present, zero if absent)."""
    counts = {INSERT: 0, UPDATE: 0, DELETE: 0, MOVE: 0}
    for item in pc.value_counts(table.column("_change")).to_pylist():
        counts[item["values"]] = item["counts"]
    return counts


SMALL_LOG_ROWS = 16_384
# The columns naming data files. A log names a few files over and over, so they are stored dictionary-encoded:
# as strings they were a third of a diff's bytes, read and copied on every diff.
FILE_COLUMNS = ("_old_file", "_new_file")
_STORED_FILE = pa.dictionary(pa.int32(), pa.string())


def encode(table: pa.Table) -> tuple[str, bytes]:
    """A fresh path for a change table, and its bytes.

    Arrow IPC, not Parquet: a diff over many commits opens every log, and an IPC file opens and decodes in
    a fraction of the time a small Parquet file takes. Small logs stay uncompressed (decompression would
    cost more than it saves); large ones are lz4-compressed.
    """
    for name in FILE_COLUMNS:
        i = table.schema.get_field_index(name)
        if i >= 0 and not pa.types.is_dictionary(table.schema.field(i).type):
            # One dictionary for every chunk: the IPC file format holds one per column.
            table = table.set_column(i, pa.field(name, _STORED_FILE), table.column(i).dictionary_encode())
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


# Logs never change, so a cached one cannot go stale; a bulk load's log has a row per loaded row, hence a
# byte budget rather than a count.
_LOGS: ByteLRU[tuple[str, ObjectStore, str, int | None], pa.Table] = ByteLRU(
    256 << 20, lambda t: t.nbytes, keep_oversized=False
)


def plain(table: pa.Table, columns: Sequence[str] = FILE_COLUMNS) -> pa.Table:
    """`table` with the file columns `columns` as strings, however they were stored."""
    for name in columns:
        i = table.schema.get_field_index(name)
        if i >= 0 and pa.types.is_dictionary(table.schema.field(i).type):
            table = table.set_column(i, pa.field(name, pa.string()), table.column(i).cast(pa.string()))
    return table


def read(store: ObjectStore, path: str) -> pa.Table:
    """Load a change table without its row images (cached per process)."""
    return _read_cached(store, path, None)


def read_keys(store: ObjectStore, path: str, count: int) -> pa.Table:
    """Only the key columns (the first `count`) of a change table, cached as read() is: a lookup by key then
    decodes a bulk load's log, a row per loaded row, a column or two instead of all of it."""
    return _read_cached(store, path, count)


def _read_cached(store: ObjectStore, path: str, keys: int | None) -> pa.Table:
    cache_key = (store.uri, store, path, keys)
    table = _LOGS.get(cache_key)
    if table is None:

        def pick(names: list[str]) -> list[int]:
            return list(range(keys)) if keys is not None else [i for i, n in enumerate(names) if n not in IMAGES]

        table = plain(_load(store, path, pick))
        _LOGS.put(cache_key, table)
    return table


def load(store: ObjectStore, path: str) -> pa.Table:
    """Read a change table from the store, bypassing the cache (Parquet logs of older commits too)."""
    return plain(_load(store, path, None))


def _load(store: ObjectStore, path: str, pick: Callable[[list[str]], list[int]] | None) -> pa.Table:
    """A change table, or the columns `pick` chooses by index from its column names; the others are not
    decoded (row images are most of a log's bytes)."""
    with _log_errors(store, path):
        if path.endswith(".parquet"):
            source = pq.ParquetFile(io.BytesIO(store.read_bytes(path)))
            names = source.schema_arrow.names
            return source.read(columns=None if pick is None else [names[i] for i in pick(names)])
        with _open(store, path) as file:
            stream = _embedded_stream(file.read_buffer())
            if pick is None:
                return ipc.open_stream(stream).read_all()
            options = ipc.IpcReadOptions(included_fields=pick(ipc.open_stream(stream).schema.names))
            return ipc.open_stream(stream, options=options).read_all()


_MAGIC = b"ARROW1"


def _embedded_stream(data: pa.Buffer) -> pa.Buffer:
    """The Arrow IPC stream an Arrow IPC file holds after its leading magic and padding (the format says it
    is one, end-of-stream marker included), checked for the file's magic at both ends.

    A diff opens every log on its path, and opening one as a file costs about 80 us (Arrow reads the footer
    through its I/O thread pool) where reading the stream costs 20. The stream reader takes an early end for
    the end of the stream, so the closing magic is what tells a truncated log from a whole one.
    """
    size = len(_MAGIC)
    if len(data) < 3 * size or data.slice(0, size) != _MAGIC or data.slice(len(data) - size) != _MAGIC:
        raise pa.ArrowInvalid("not a whole Arrow IPC file (truncated or overwritten)")
    return data.slice(8)


def decode(data: bytes) -> pa.Table:
    """A change table from the bytes encode() made."""
    return plain(ipc.open_file(pa.py_buffer(data)).read_all())


def _open(store: ObjectStore, path: str) -> pa.NativeFile:
    """An Arrow change log for reading: memory-mapped when the store is local (the columns a caller reads
    are then never copied: reading a diff's logs into memory first cost as much as the rest of the diff),
    else fetched whole."""
    local = store.local_path(path)
    return pa.memory_map(local) if local is not None else pa.BufferReader(store.read_bytes(path))


@contextmanager
def _log_errors(store: ObjectStore, path: str) -> Iterator[None]:
    """A missing or unreadable change log raised as CorruptDatasetError naming it."""
    try:
        yield
    except FileNotFoundError as exc:
        raise CorruptDatasetError(f"{store.uri}/{path}: change log is missing; run ds.validate()") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(f"{store.uri}/{path}: change log is unreadable ({exc})") from exc


def row_at(store: ObjectStore, path: str, keys: int, row: int) -> pa.Table:
    """One row of a change log whose first `keys` columns are the key: its key and change columns
    (`_change`, `_old_file`, ...) and the row images it recorded. Only the batch holding the row is decoded
    (a large commit's images are large); cached per process, as logs never change."""
    return _row_cached(store.uri, store, path, keys, row)


def image_of(row: pa.Table, name: str) -> pa.Array | None:
    """The row image `name` (PRE or POST) of a row_at() row as a one-row struct array, or None when the log
    did not record it."""
    if name not in row.column_names:
        return None
    image = row.column(name).combine_chunks()
    return None if image.null_count else image


@lru_cache(maxsize=4096)
def _row_cached(store_uri: str, store: ObjectStore, path: str, keys: int, row: int) -> pa.Table:
    if path.endswith(".parquet"):  # logs of older commits record no images
        return read(store, path).slice(row, 1)
    # read_keys() loaded the log a chunk per batch of the file: its chunk lengths locate the row's batch.
    lengths = np.cumsum([0, *(len(c) for c in read_keys(store, path, keys).column(0).chunks)])
    batch = int(np.searchsorted(lengths, row, side="right")) - 1
    fs, root = store.arrow_fs()
    with _log_errors(store, path), fs.open_input_file(f"{root}/{path}") as source:
        one = ipc.open_file(source).get_batch(batch).take(pa.array([row - int(lengths[batch])]))
        return plain(pa.Table.from_batches([one]))  # a copy: a slice would keep the whole batch cached


def load_all(store: ObjectStore, paths: Sequence[str]) -> list[pa.Table]:
    """Many change tables as stored (file columns dictionary-encoded in all but older logs, for compose());
    from an object store side by side (a diff over many commits opens each of them, and parallel gets take
    about as long as one), from local disk kept mapped (_kept())."""
    return _each(store, paths, lambda path: _kept(store, path))


# Memory-mapped logs, kept for the process: a mapped log's table holds no heap, only address space and page
# cache, and mapping it again (a page fault for each stretch of it a diff reads) cost a third of a diff
# over 100 commits. Keyed by the file's inode, size and mtime too, so a log replaced or cut short in place
# is mapped afresh, never read through the old mapping.
_MAPPED: ByteLRU[tuple[str, ObjectStore, str, tuple[int, int, int]], pa.Table] = ByteLRU(
    1 << 30, lambda t: t.nbytes, keep_oversized=False
)


def _kept(store: ObjectStore, path: str) -> pa.Table:
    """One change log as stored, from the mapped logs when it is a local Arrow log stored uncompressed."""
    local = store.local_path(path)
    if local is None or path.endswith(".parquet"):
        return _load(store, path, None)
    try:
        stat = os.stat(local)
    except OSError:
        return _load(store, path, None)  # raises the error that names the log
    key = (store.uri, store, path, (stat.st_ino, stat.st_size, stat.st_mtime_ns))
    table = _MAPPED.get(key)
    if table is None:
        table = _load(store, path, None)
        if table.num_rows <= SMALL_LOG_ROWS:  # encode() left it uncompressed: the table is the mapping
            _MAPPED.put(key, table)
    return table


def stored_bytes(store: ObjectStore, paths: Sequence[str]) -> int:
    """Total size of the change logs at `paths` as stored."""
    return sum(_each(store, paths, lambda path: _sized(store, path)))


def _sized(store: ObjectStore, path: str) -> int:
    with _log_errors(store, path):
        return store.size(path)


def _each(store: ObjectStore, paths: Sequence[str], fn: Callable[[str], T]) -> list[T]:
    """fn() of each path, side by side on an object store. Local files are done in turn: each takes well
    under a millisecond, less than handing it to a thread."""
    if len(paths) < 2 or store.local_path(paths[0]) is not None:
        return [fn(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(len(paths), 8)) as pool:
        return list(pool.map(fn, paths))

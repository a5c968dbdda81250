"""Record fields: bulky columns stored row-wise in ArrayRecord files, addressed from the index files.

Each data (index) file carries, per row, the record file and position holding that row's record fields
(`_lh_rec_file`, `_lh_rec_pos`; null when every record field of the row is null). A record is the row's
record-field values framed one after another: binary and string values raw, anything else as a one-row
Arrow IPC message, so a reader decodes only the rows it asked for.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import CorruptDatasetError
from .formats import RECORDS_DIR
from .io import ObjectStore

RECORD_FILE = "_lh_rec_file"
RECORD_POS = "_lh_rec_pos"
ADDRESS_FIELDS = [pa.field(RECORD_FILE, pa.string()), pa.field(RECORD_POS, pa.int64())]

# Fork safety: riegeli (under ArrayRecord) recycles zstd contexts through a process-wide background thread,
# and ArrayRecord's thread pools are process-wide too; none of them survive fork(). A process forked after
# using them (a DataLoader worker, a multiprocessing pool) segfaults or hangs in its first ArrayRecord call.
# So records are compressed with snappy (no recycled contexts; blobs worth storing row-wise rarely compress
# much anyway) and no writer or reader uses a thread pool; RecordReader reads several files in parallel.
_WRITER_OPTIONS = "max_parallelism:1,snappy"
_READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"

_NULL, _RAW, _IPC = 0, 1, 2
_SLOT = struct.Struct("<BQ")


def _raw(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
    )


def encode_rows(table: pa.Table) -> list[bytes | None]:
    """One framed record per row of `table` (its columns are the record fields); None if all null."""
    columns = [c.combine_chunks() for c in table.columns]
    raw = [_raw(c.type) for c in columns]
    valid = [pc.is_valid(c).to_numpy(zero_copy_only=False) for c in columns]
    pylists: list[list[Any]] = [c.to_pylist() if r else [] for c, r in zip(columns, raw, strict=True)]
    out: list[bytes | None] = []
    for i in range(table.num_rows):
        head, body = [], []
        for j, col in enumerate(columns):
            if not valid[j][i]:
                head.append(_SLOT.pack(_NULL, 0))
                continue
            if raw[j]:
                value = pylists[j][i]
                payload = value.encode() if isinstance(value, str) else bytes(value)
                kind = _RAW
            else:
                payload = pa.record_batch([col.slice(i, 1)], names=["v"]).serialize().to_pybytes()
                kind = _IPC
            head.append(_SLOT.pack(kind, len(payload)))
            body.append(payload)
        out.append(b"".join(head + body) if body else None)
    return out


def decode_values(record: bytes | None, schema: pa.Schema) -> list[Any]:
    """Python values of one framed record, one per field of `schema` (all None when `record` is None)."""
    if record is None:
        return [None] * len(schema)
    values: list[Any] = []
    offset = _SLOT.size * len(schema)
    for j, field in enumerate(schema):
        kind, size = _SLOT.unpack_from(record, j * _SLOT.size)
        payload = record[offset : offset + size]
        offset += size
        if kind == _NULL:
            values.append(None)
        elif kind == _RAW:
            values.append(
                payload.decode() if pa.types.is_string(field.type) or pa.types.is_large_string(field.type) else payload
            )
        else:
            batch = pa.ipc.read_record_batch(pa.py_buffer(payload), pa.schema([pa.field("v", field.type)]))
            values.append(batch.column(0)[0].as_py())
    return values


def decode_rows(records: Sequence[bytes | None], schema: pa.Schema) -> list[pa.Array]:
    """Columns of record-field values from framed records (None = all fields null)."""
    rows = [decode_values(rec, schema) for rec in records]
    return [pa.array([row[j] for row in rows], f.type) for j, f in enumerate(schema)]


def write_records(
    store: ObjectStore, table: pa.Table, group_size: int, max_file_bytes: int
) -> tuple[pa.Array, pa.Array, list[tuple[str, int]]]:
    """Write the record fields of `table`; returns the address columns and (path, bytes) of each file."""
    from array_record.python.array_record_module import ArrayRecordWriter

    encoded = encode_rows(table)
    files: list[str | None] = [None] * len(encoded)
    positions: list[int | None] = [None] * len(encoded)
    written: list[tuple[str, int]] = []
    i = 0
    while i < len(encoded):
        path = f"{RECORDS_DIR}/{uuid.uuid4().hex}.array_record"
        fd, tmp = tempfile.mkstemp(suffix=".array_record")
        os.close(fd)
        try:
            writer = ArrayRecordWriter(tmp, f"group_size:{group_size},{_WRITER_OPTIONS}")
            size = pos = 0
            while i < len(encoded) and (size < max_file_bytes or pos == 0):
                rec = encoded[i]
                if rec is not None:
                    writer.write(rec)
                    files[i], positions[i] = path, pos
                    pos += 1
                    size += len(rec)
                i += 1
            writer.close()
            if pos:
                nbytes = store.put_file(path, tmp)
                written.append((path, nbytes))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return pa.array(files, pa.string()), pa.array(positions, pa.int64()), written


class RecordReader:
    """Reads records by address, through a bounded local cache when the store is remote."""

    def __init__(self, store: ObjectStore, cache_dir: str | None = None, cache_bytes: int = 2 << 30) -> None:
        self._store = store
        self._cache_dir = cache_dir
        self._cache_bytes = cache_bytes
        self._readers: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Open readers hold C++ handles; a copy in another process opens its own.
        return {**self.__dict__, "_readers": OrderedDict(), "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _cache_path(self, path: str) -> tuple[str, str]:
        cache = self._cache_dir or os.path.join(tempfile.gettempdir(), "labelhouse-records")
        target = os.path.join(cache, self._store.uri.replace("://", "_").replace("/", "_"), path.replace("/", "_"))
        return cache, target

    def _download(self, path: str, target: str) -> None:
        expected = self._store.size(path)
        if os.path.exists(target) and os.path.getsize(target) == expected:
            os.utime(target)  # recently used: evicted last
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as f:
                f.write(self._store.read_bytes(path))
            if os.path.getsize(tmp) != expected:
                raise CorruptDatasetError(f"{self._store.uri}/{path}: downloaded record file has the wrong size")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _open(self, path: str) -> Any:
        from array_record.python.array_record_module import ArrayRecordReader

        local = self._store.local_path(path)  # _READER_OPTIONS: see "Fork safety" above
        try:
            if local is not None:
                return ArrayRecordReader(local, _READER_OPTIONS)
            _cache, target = self._cache_path(path)
            self._download(path, target)
            return ArrayRecordReader(target, _READER_OPTIONS)
        except (RuntimeError, OSError) as exc:
            raise CorruptDatasetError(
                f"{self._store.uri}/{path}: record file is missing or unreadable ({exc})"
            ) from exc

    def _reader(self, path: str) -> Any:
        with self._lock:
            reader = self._readers.get(path)
            if reader is not None:
                self._readers.move_to_end(path)
                return reader
        reader = self._open(path)
        with self._lock:
            self._readers[path] = reader
            while len(self._readers) > 64:
                self._readers.popitem(last=False)
        return reader

    def _read_at(self, path: str, positions: list[int]) -> list[bytes]:
        """Records of one file. For remote stores the cached copy is pinned while it is read: the reader
        opens its file lazily, so eviction by a parallel read must wait until this read is done."""
        if self._store.local_path(path) is not None:
            return list(self._reader(path).read(positions))
        cache, target = self._cache_path(path)
        with _pinned(target):
            if not os.path.exists(target):  # evicted since its reader was opened: fetch it again
                with self._lock:
                    self._readers.pop(path, None)
            try:
                got = list(self._reader(path).read(positions))
            except RuntimeError as exc:
                raise CorruptDatasetError(f"{self._store.uri}/{path}: record file is unreadable ({exc})") from exc
        with _CACHE_LOCK:
            _trim(cache, self._cache_bytes)
        return got

    def read_one(self, path: str, position: int) -> bytes:
        """The record at one address (the fast path for single-row random access)."""
        record: bytes = self._read_at(path, [position])[0]
        return record

    def read(self, files: pa.Array | pa.ChunkedArray, positions: pa.Array | pa.ChunkedArray) -> list[bytes | None]:
        """The records at the given addresses, in order (None where the address is null)."""
        files_list = files.to_pylist()
        pos = np.asarray(positions.to_numpy(zero_copy_only=False))
        out: list[bytes | None] = [None] * len(files_list)
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(files_list):
            if f is not None:
                groups.setdefault(f, []).append(i)

        def fetch(item: tuple[str, list[int]]) -> None:
            path, rows = item
            got = self._read_at(path, [int(pos[r]) for r in rows])
            for r, rec in zip(rows, got, strict=True):
                out[r] = rec

        if len(groups) <= 1:
            for item in groups.items():
                fetch(item)
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
                list(pool.map(fetch, groups.items()))
        return out


_CACHE_LOCK = threading.Lock()
_IN_USE: dict[str, int] = {}  # cached files being read right now (by this process's threads)


@contextlib.contextmanager
def _pinned(target: str) -> Iterator[None]:
    with _CACHE_LOCK:
        _IN_USE[target] = _IN_USE.get(target, 0) + 1
    try:
        yield
    finally:
        with _CACHE_LOCK:
            _IN_USE[target] -= 1
            if not _IN_USE[target]:
                del _IN_USE[target]


def _trim(cache: str, limit: int) -> None:
    """Evict least recently used cached files until the cache fits `limit` bytes; files being read and
    downloads in flight stay."""
    entries = []
    for dirpath, _dirs, names in os.walk(cache):
        for n in names:
            full = os.path.join(dirpath, n)
            if n.endswith(".part") or full in _IN_USE:
                continue
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, full))
    total = sum(e[1] for e in entries)
    for _mtime, size, full in sorted(entries):
        if total <= limit:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(full)
        total -= size

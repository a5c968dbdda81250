"""Record fields: bulky columns stored row-wise in ArrayRecord files, addressed from the index files.

Each data (index) file carries, per row, the record file and position holding that row's record fields
(`_lh_rec_file`, `_lh_rec_pos`; null when every record field of the row is null). A record is the row's
record-field values framed one after another: binary and string values raw, anything else as a one-row
Arrow IPC message, so a reader decodes only the rows it asked for. A dataset whose one record field is
binary or string stores the bare value instead (RecordFormat).
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from . import bits, diskcache
from .errors import CorruptDatasetError
from .formats import RECORDS_DIR
from .io import ObjectStore
from .io.local import staging_path
from .pools import ForkSafePool

RECORD_FILE = "_lh_rec_file"
RECORD_POS = "_lh_rec_pos"
ADDRESS_FIELDS = [pa.field(RECORD_FILE, pa.string()), pa.field(RECORD_POS, pa.int64())]

# Fork safety: riegeli (under ArrayRecord) recycles zstd contexts through a process-wide background thread,
# and ArrayRecord's thread pools are process-wide too; none of them survive fork(). A process forked after
# using them (a DataLoader worker, a multiprocessing pool) segfaults or hangs in its first ArrayRecord call.
# So records are compressed with snappy at most (no recycled contexts) and no writer or reader uses a thread
# pool; RecordReader reads several files in parallel.
_WRITER_OPTIONS = "max_parallelism:1"
RECORD_CODECS = ("auto", "snappy", "uncompressed")
# "auto" compresses a record file only if a sample of its first record shrinks by this much: blobs worth
# storing row-wise (JPEG, PNG, encoded audio) are mostly compressed already, and snappy over 10 MB of them
# took 4x as long as writing them as they are, for no saving, and slowed their reads by a third.
_AUTO_SAMPLE_BYTES = 64 << 10
_AUTO_MIN_SAVING = 0.1
_READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"
# Threads that fetch remote record files side by side, kept for the process (and renewed after a fork).
_FETCHES = ForkSafePool(8, "lh-records")

_NULL, _RAW, _IPC = 0, 1, 2


def _raw(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
    )


# A record's header holds one slot per field: the kind of its payload and the payload's size.
_HEAD = np.dtype([("kind", "u1"), ("size", "<u8")])


class _Decoding(NamedTuple):
    """How to read records of one schema: the header (its _HEAD slots back to back), which fields are text,
    and the schema of each field's IPC payload."""

    head: struct.Struct
    text: list[bool]
    ipc: list[pa.Schema]


@functools.lru_cache(maxsize=256)
def _decoding(schema: pa.Schema) -> _Decoding:
    return _Decoding(
        struct.Struct("<" + "BQ" * len(schema)),
        [pa.types.is_string(f.type) or pa.types.is_large_string(f.type) for f in schema],
        [pa.schema([pa.field("v", f.type)]) for f in schema],
    )


def _value_parts(array: pa.Array, valid: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.uint64], list[Any], int]:
    """Sizes and payloads of one record field over a batch (payloads of null values are empty), and its kind.

    Binary and string payloads are slices of the array's data buffer, not copies."""
    flags = valid.tolist()
    if not _raw(array.type):
        one_row = [pa.record_batch([array.slice(i, 1)], names=["v"]) if v else None for i, v in enumerate(flags)]
        payloads = [b"" if batch is None else batch.serialize() for batch in one_row]
        return np.array([len(p) for p in payloads], np.uint64), payloads, _IPC
    offsets, payloads = _raw_slices(array, flags)
    return np.where(valid, np.diff(offsets), 0).astype(np.uint64), payloads, _RAW


def _raw_slices(array: pa.Array, flags: list[bool]) -> tuple[npt.NDArray[Any], list[Any]]:
    """A binary or string array's offsets, and its values as slices of its data buffer (empty where not
    `flags`)."""
    wide = pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type)
    _validity, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64 if wide else np.int32)[array.offset :][: len(array) + 1]
    data = memoryview(data_buf if data_buf is not None else b"")
    bounds = offsets.tolist()
    return offsets, [data[bounds[i] : bounds[i + 1]] if v else b"" for i, v in enumerate(flags)]


def encode_rows(table: pa.Table) -> Iterator[bytes | None]:
    """One framed record per row of `table` (its columns are the record fields); None if all null.

    Records are built batch by batch straight from the Arrow buffers, each by one join of its header and
    value slices, and yielded one at a time: a record's values are copied once, and only while it is written.
    """
    width = table.num_columns
    for batch in table.to_batches():
        n = batch.num_rows
        if not n:
            continue
        valid = np.ones((n, width), np.bool_)
        head = np.zeros((n, width), _HEAD)
        parts: list[list[Any]] = []
        for j, array in enumerate(batch.columns):
            if array.null_count:
                valid[:, j] = bits.valid(array)
            sizes, payloads, kind = _value_parts(array, valid[:, j])
            head["kind"][:, j] = np.where(valid[:, j], kind, _NULL)
            head["size"][:, j] = sizes
            parts.append(payloads)
        heads = memoryview(head.tobytes())
        step = _HEAD.itemsize * width
        any_valid: list[bool] = np.asarray(valid.any(axis=1)).tolist()
        for i, some in enumerate(any_valid):
            if some:
                yield b"".join([heads[i * step : (i + 1) * step], *(p[i] for p in parts)])
            else:
                yield None


def decode_columns(records: Sequence[bytes | None], schema: pa.Schema) -> list[list[Any]]:
    """Python values of framed records, one list per field of `schema` (None where a record is None)."""
    width = len(schema)
    head, text, ipc = _decoding(schema)
    columns: list[list[Any]] = [[None] * len(records) for _ in range(width)]
    for i, record in enumerate(records):
        if record is None:
            continue
        slots = head.unpack_from(record)
        offset = head.size
        for j in range(width):
            kind, size = slots[2 * j], slots[2 * j + 1]
            if kind == _RAW:
                payload = record[offset : offset + size]
                columns[j][i] = payload.decode() if text[j] else payload
            elif kind == _IPC:
                batch = pa.ipc.read_record_batch(pa.py_buffer(record[offset : offset + size]), ipc[j])
                columns[j][i] = batch.column(0)[0].as_py()
            offset += size
    return columns


def _bare_values(column: pa.ChunkedArray) -> Iterator[bytes | None]:
    """A binary or string column's values as bytes, None where null."""
    for array in column.chunks:
        if not len(array):
            continue
        flags = bits.valid(array).tolist()
        _offsets, payloads = _raw_slices(array, flags)
        for value, ok in zip(payloads, flags, strict=True):
            yield bytes(value) if ok else None


@dataclass(frozen=True)
class RecordFormat:
    """How a dataset's record fields (`schema`) make up a record: framed, or `bare`.

    A bare record is the value itself, for a lone binary or string field in a dataset of format version 2
    or later. A read then hands back the stored bytes as they are: cutting a value out of its framed record
    copied it once more, which for 50 KB blobs took as long as the read itself.
    """

    schema: pa.Schema
    bare: bool

    @staticmethod
    def of(schema: pa.Schema, format_version: int) -> RecordFormat:
        """The format of a dataset with record fields `schema` and format version `format_version`."""
        return RecordFormat(schema, format_version >= 2 and len(schema) == 1 and _raw(schema[0].type))

    def encode(self, table: pa.Table) -> Iterator[bytes | None]:
        """One record per row of `table` (the record fields); None where it has no value to store."""
        return _bare_values(table.column(0)) if self.bare else encode_rows(table)

    def columns(self, records: Sequence[bytes | None]) -> list[list[Any]]:
        """Python values of records, one list per field (None where a record is None)."""
        if not self.bare:
            return decode_columns(records, self.schema)
        if _decoding(self.schema).text[0]:
            return [[None if r is None else r.decode() for r in records]]
        return [list(records)]

    def values(self, record: bytes | None) -> list[Any]:
        """Python values of one record, one per field (all None when `record` is None)."""
        return [column[0] for column in self.columns([record])]

    def arrays(self, records: Sequence[bytes | None]) -> list[pa.Array]:
        """Columns of values from records."""
        return [pa.array(values, f.type) for values, f in zip(self.columns(records), self.schema, strict=True)]


class _RecordFile:
    """One ArrayRecord file being written: staged locally (beside its final name for a local store), then
    put into the store whole, so it becomes visible only complete."""

    def __init__(self, store: ObjectStore, group_size: int, codec: str) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        self.store = store
        self.path = f"{RECORDS_DIR}/{uuid.uuid4().hex}.array_record"
        self.count = 0
        self.size = 0
        self._staged = staging_path(store, self.path)
        try:
            self._writer = ArrayRecordWriter(self._staged, f"group_size:{group_size},{_WRITER_OPTIONS},{codec}")
        except BaseException:
            self.discard()
            raise

    def write(self, record: bytes) -> None:
        self._writer.write(record)
        self.count += 1
        self.size += len(record)

    def finish(self) -> tuple[str, int]:
        """Close the file and put it into the store; its path and size there."""
        try:
            self._writer.close()
            return self.path, self.store.put_file(self.path, self._staged)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the staged copy (after a failure, or what put_file left behind)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._staged)


def record_codec(compression: str, first: bytes) -> str:
    """The ArrayRecord codec of a record file whose first record is `first` (`compression` of RECORD_CODECS)."""
    if compression != "auto":
        return compression
    sample = first[:_AUTO_SAMPLE_BYTES]
    packed = pa.compress(sample, codec="snappy", asbytes=True)
    return "snappy" if len(packed) <= len(sample) * (1 - _AUTO_MIN_SAVING) else "uncompressed"


def write_records(
    store: ObjectStore,
    table: pa.Table,
    form: RecordFormat,
    group_size: int,
    max_file_bytes: int,
    compression: str = "auto",
) -> tuple[pa.Array, pa.Array, list[tuple[str, int]]]:
    """Write the record fields of `table` as records of `form`; returns the address columns and (path, bytes)
    of each file.

    `compression` is one of RECORD_CODECS, chosen per file.
    """
    files: list[str | None] = [None] * table.num_rows
    positions: list[int | None] = [None] * table.num_rows
    written: list[tuple[str, int]] = []
    current: _RecordFile | None = None
    previous: Future[tuple[str, int]] | None = None
    # A full file is put into the store (fsync and rename, or upload) while the next one is written.
    with ThreadPoolExecutor(max_workers=1) as putter:
        try:
            for i, record in enumerate(form.encode(table)):
                if record is None:
                    continue
                if current is None:
                    current = _RecordFile(store, group_size, record_codec(compression, record))
                files[i], positions[i] = current.path, current.count
                current.write(record)
                if current.size >= max_file_bytes:
                    if previous is not None:
                        written.append(previous.result())
                    previous, current = putter.submit(current.finish), None
            if previous is not None:
                written.append(previous.result())
            if current is not None:
                last, current = current, None
                written.append(last.finish())
        finally:
            if current is not None:
                current.discard()
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
            diskcache.touch(target)
            return

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(self._store.read_bytes(path))
            if os.path.getsize(tmp) != expected:
                raise CorruptDatasetError(f"{self._store.uri}/{path}: downloaded record file has the wrong size")

        diskcache.publish(target, write)

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
        with diskcache.pinned(target):
            if not os.path.exists(target):  # evicted since its reader was opened: fetch it again
                with self._lock:
                    self._readers.pop(path, None)
            try:
                got = list(self._reader(path).read(positions))
            except RuntimeError as exc:
                raise CorruptDatasetError(f"{self._store.uri}/{path}: record file is unreadable ({exc})") from exc
        diskcache.trim(cache, self._cache_bytes)
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

        if len(groups) <= 1 or self._store.local_path(next(iter(groups))) is not None:
            # Local files in turn: an ArrayRecord read holds the GIL, so threads only took turns with more
            # switching (a 256-row batch over 4 files: 30 us/row in turn, 42 on four threads).
            for item in groups.items():
                fetch(item)
        else:  # a first read of a remote file downloads it: those overlap
            for done in [_FETCHES.submit(fetch, item) for item in groups.items()]:
                done.result()
        return out

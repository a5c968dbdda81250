"""A local cache of data files decoded to uncompressed Arrow IPC, memory-mapped by later reads.

Decoding Parquet is most of what a full read costs (about 70 ms for a 1M-row, 10-column file on 2 cores);
a table memory-mapped from an IPC copy costs about 2 ms and no heap, as its columns point into the mapping.
That is what repeated reads of the same snapshot want: training epochs, notebooks rerunning a cell, views
and diffs reading the same files again. The first read of a file pays its decode plus writing the copy.
A file with deletions also gets a copy of its live rows per deletion vector, kept by the first unfiltered
read of that version: dropping 0.5% of a 1M-row file's rows copies the other 99.5% (25 ms against 3 ms
for mapping them), and a version is read again and again as much as the head is.

Data files are immutable and never reuse a name, so an entry never goes stale; it is named by the store,
the path and the size, and checked against the schema and row count the manifest expects when opened.
Copies are uncompressed (about twice the Parquet size) and the directory is trimmed to a byte budget,
least recently used first. Eviction by another process cannot break a read: a mapped file stays readable
after it is unlinked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import diskcache
from .errors import CorruptDatasetError
from .io import ObjectStore

ENV_DIRECTORY = "LABELHOUSE_ARROW_CACHE"
# Batches of the copies: the row group size data files are written with, so scans see the same batches.
BATCH_ROWS = 64 * 1024
SOURCE_KEY = b"labelhouse.source"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArrowCacheOptions:
    """Where decoded copies of data files are kept, and how many bytes they may take."""

    directory: str
    max_bytes: int = 16 << 30

    @staticmethod
    def from_env() -> ArrowCacheOptions | None:
        """The options `LABELHOUSE_ARROW_CACHE` (a directory) asks for, if set: every catalog opened
        without explicit options then uses it (a machine's jobs share one cache)."""
        directory = os.environ.get(ENV_DIRECTORY)
        return ArrowCacheOptions(directory) if directory else None


class ArrowCache:
    """Data files as Arrow tables read from memory-mapped IPC copies, filled on first read."""

    def __init__(self, options: ArrowCacheOptions) -> None:
        self.options = options

    def table(self, store: ObjectStore, row: dict[str, Any], schema: pa.Schema) -> pa.Table:
        """All rows of the data file a manifest row describes, deleted ones included, in `schema`."""
        entry, tagged = self._entry(_source(store, row), schema)
        cached = self._mapped(entry, tagged, row["rows"])
        if cached is not None:
            return cached
        table = _decode(store, row["path"], schema)
        if table.num_rows != row["rows"]:
            raise CorruptDatasetError(
                f"{store.uri}/{row['path']}: data file has {table.num_rows} rows where the manifest says "
                f"{row['rows']}; run ds.validate() and restore the file or an earlier snapshot"
            )
        try:
            diskcache.publish(entry, lambda tmp: _write(tmp, table.replace_schema_metadata(tagged.metadata)))
            diskcache.trim(self.options.directory, self.options.max_bytes)
        except OSError as exc:
            self._cannot_keep(row, exc)
        return table

    def live(self, store: ObjectStore, row: dict[str, Any], schema: pa.Schema) -> pa.Table | None:
        """The live rows of a data file with deletions, if a copy of them is kept (see `keeping_live`)."""
        entry, tagged = self._entry(_live_source(store, row), schema)
        return self._mapped(entry, tagged, row["rows"] - row["deleted"])

    @contextlib.contextmanager
    def keeping_live(self, store: ObjectStore, row: dict[str, Any], schema: pa.Schema) -> Iterator[LiveCopy]:
        """A copy of the live rows of a data file with deletions, written batch by batch as a read drops
        its deleted rows. It is kept if the block ends normally with every live row added; a read that
        stops early or fails leaves nothing. Each deletion vector of a file gets its own copy: every
        version of a file is read as fast as its first."""
        entry, tagged = self._entry(_live_source(store, row), schema)
        copy = LiveCopy(entry, tagged)
        try:
            yield copy
        except BaseException:
            copy.discard()
            raise
        try:
            copy.keep(row["rows"] - row["deleted"])
            diskcache.trim(self.options.directory, self.options.max_bytes)
        except OSError as exc:
            self._cannot_keep(row, exc)

    def _entry(self, source: str, schema: pa.Schema) -> tuple[str, pa.Schema]:
        """Where the copy of `source` lives, and the schema it must have (it names its source: a misplaced
        copy shows)."""
        name = hashlib.sha256(source.encode()).hexdigest()[:40]
        return os.path.join(self.options.directory, name[:2], f"{name}.arrow"), schema.with_metadata(
            {SOURCE_KEY: source}
        )

    @staticmethod
    def _mapped(entry: str, schema: pa.Schema, rows: int) -> pa.Table | None:
        """The entry's rows, marked recently used, or None (absent, or dropped as not what is expected)."""
        cached = _open(entry, schema, rows)
        if cached is None:
            return None
        diskcache.touch(entry)
        return cached.replace_schema_metadata(None)

    def _cannot_keep(self, row: dict[str, Any], exc: OSError) -> None:
        # A full or read-only cache disk slows reads down; it must not fail them.
        _log.warning("arrow cache %s: cannot keep a copy of %s (%s)", self.options.directory, row["path"], exc)


class LiveCopy:
    """A cache entry being written from the batches a read produces. It never fails the read: after a
    write error nothing more is written and `keep` raises that error."""

    def __init__(self, entry: str, schema: pa.Schema) -> None:
        self.entry = entry
        self.rows = 0
        self._error: OSError | None = None
        self._tmp = ""
        self._sink: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        try:
            self._tmp = diskcache.part_path(entry)
            self._sink = pa.OSFile(self._tmp, "wb")
            self._writer = pa.ipc.new_file(self._sink, schema)
        except OSError as exc:
            self._fail(exc)

    def add(self, batch: pa.RecordBatch) -> None:
        """Append live rows, in file order."""
        self.rows += batch.num_rows
        if self._writer is not None:
            try:
                self._writer.write_batch(batch)
            except OSError as exc:
                self._fail(exc)

    def keep(self, rows: int) -> None:
        """Publish the copy if it holds `rows` rows (fewer: the read did not see every live row)."""
        try:
            if self._error is not None:
                raise self._error
            assert self._writer is not None and self._sink is not None
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None
            if self.rows == rows:
                os.replace(self._tmp, self.entry)
            else:
                _log.warning("arrow cache: not keeping %s: %d live rows read, %d expected", self.entry, self.rows, rows)
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop what was written (nothing once kept)."""
        writer, sink, self._writer, self._sink = self._writer, self._sink, None, None
        with contextlib.suppress(OSError, pa.ArrowInvalid):
            if writer is not None:
                writer.close()
            if sink is not None:
                sink.close()
        if self._tmp:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)

    def _fail(self, exc: OSError) -> None:
        self._error = exc
        self.discard()


def _source(store: ObjectStore, row: dict[str, Any]) -> str:
    """What a copy of a whole data file names: the file (names are never reused; the size guards a mix-up)."""
    return f"{store.uri}\n{row['path']}\n{row['bytes']}"


def _live_source(store: ObjectStore, row: dict[str, Any]) -> str:
    """What a copy of a file's live rows names: the file and its deletion vector (one per version)."""
    return f"{_source(store, row)}\n{row['dv']}"


def _open(entry: str, schema: pa.Schema, rows: int) -> pa.Table | None:
    """The cached table, or None if absent; an entry that is not what the manifest expects is dropped."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(entry))
        table = reader.read_all()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, pa.ArrowInvalid) as exc:
        _log.warning("arrow cache: dropping unreadable entry %s (%s)", entry, exc)
        _drop(entry)
        return None
    if table.num_rows != rows or not table.schema.equals(schema, check_metadata=True):
        _log.warning("arrow cache: dropping entry %s: it does not match its data file", entry)
        _drop(entry)
        return None
    return table


def _drop(entry: str) -> None:
    with contextlib.suppress(OSError):  # gone already, or the directory is unusable: a refill will tell
        os.unlink(entry)


def _decode(store: ObjectStore, path: str, schema: pa.Schema) -> pa.Table:
    fs, root = store.arrow_fs()
    try:
        return pq.read_table(f"{root}/{path}", filesystem=fs, schema=schema)
    except FileNotFoundError:
        raise  # the read reports the missing data file
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(
            f"{store.uri}/{path}: data file is unreadable ({exc}); run ds.validate() and restore it"
        ) from exc


def _write(path: str, table: pa.Table) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)

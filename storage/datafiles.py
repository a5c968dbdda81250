"""Data files: Parquet index files of user columns, record addresses and row positions, written once."""

from __future__ import annotations

import functools
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import stats
from .errors import InvalidInputError
from .formats import DATA_DIR, POS_COLUMN
from .io import ObjectStore
from .lru import ByteLRU
from .records import ADDRESS_FIELDS, RECORD_CODECS, RECORD_FILE, RECORD_POS, RecordFormat, RecordReader, write_records


@dataclass(frozen=True)
class WriteOptions:
    """Knobs for data files: rows per file and per Parquet row group, and the compression codec."""

    max_rows_per_file: int = 1_000_000
    max_bytes_per_file: int = 512 << 20  # bounds memory when rows carry blobs
    row_group_size: int = 64 * 1024
    compression: str = "zstd"
    # Floats are stored with a lighter codec: measured mantissas barely shrink under ZSTD (6% on the bench's
    # coordinates and scores) while its decoding is ~40% of a full read of a label table; LZ4 still
    # compresses what repeats. None: `compression` for every column.
    float_compression: str | None = "lz4"
    record_group_size: int = 1  # ArrayRecord records per chunk: 1 is fastest for random access
    # Codec of record files: "auto" (snappy when a sample of the file's first record compresses), "snappy"
    # or "uncompressed".
    record_compression: str = "auto"
    max_record_file_bytes: int = 256 << 20
    # Copy the old row of every update and delete (and the new row of every insert and update, in commits
    # of up to MAX_LOGGED_NEW_ROWS rows) into the commit's change log, like Delta's change data feed: diff()
    # then reads only change logs, while each commit reads the row groups holding the rows it replaces.
    log_row_images: bool = False

    def __post_init__(self) -> None:
        if self.record_compression not in RECORD_CODECS:
            raise InvalidInputError(
                f"WriteOptions(record_compression={self.record_compression!r}): use one of {', '.join(RECORD_CODECS)}"
            )

    def to_json(self) -> dict[str, Any]:
        """For the dataset's metadata."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Layout:
    """How a dataset's columns map to files: index columns in Parquet, record fields in ArrayRecord."""

    schema: pa.Schema
    record_fields: tuple[str, ...]
    reader: RecordReader
    records: RecordFormat

    @property
    def physical_schema(self) -> pa.Schema:
        """Columns as stored in data (index) files."""
        fields = [f for f in self.schema if f.name not in self.record_fields]
        if self.record_fields:
            fields += ADDRESS_FIELDS
        return pa.schema([*fields, pa.field(POS_COLUMN, pa.int64())])

    def physical_columns(self, columns: Sequence[str]) -> list[str]:
        """The stored columns needed to produce `columns` (record fields become their address)."""
        out = [c for c in columns if c not in self.record_fields]
        if any(c in self.record_fields for c in columns):
            out += [RECORD_FILE, RECORD_POS]
        return out

    def resolve(self, table: pa.Table, columns: Sequence[str]) -> pa.Table:
        """`table` read with physical_columns(columns), as the asked-for columns with records fetched."""
        wanted = [c for c in columns if c in self.record_fields]
        if not wanted:
            return table.select(list(columns))
        records = self.reader.read(table.column(RECORD_FILE), table.column(RECORD_POS))
        decoded = dict(zip(self.record_fields, self.records.arrays(records), strict=True))
        arrays = [decoded[c] if c in decoded else table.column(c) for c in columns]
        fields = [self.schema.field(c) if c in decoded else table.schema.field(c) for c in columns]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# Bytes of a column chunk's dictionary before Parquet falls back to plain encoding (see write_data_file).
DICTIONARY_PAGE_BYTES = 64 << 10


def with_positions(table: pa.Table) -> pa.Table:
    """Append the physical position column used to apply deletion vectors after pushed-down filters."""
    return table.append_column(POS_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))


DICTIONARY_SAMPLE = 1024


def codecs(schema: pa.Schema, options: WriteOptions) -> str | dict[str, str]:
    """The compression codec of each leaf column of a data file (WriteOptions.float_compression for floats).

    Every leaf is named: given a mapping, Parquet leaves the columns it does not name uncompressed.
    """
    if options.float_compression is None:
        return options.compression
    return {path: options.float_compression if is_float else options.compression for path, is_float in _leaves(schema)}


@functools.lru_cache(maxsize=256)
def _leaves(schema: pa.Schema) -> tuple[tuple[str, bool], ...]:
    """Parquet's path of each leaf column of `schema` (nested ones too), and whether it stores floats."""
    sink = io.BytesIO()
    pq.write_table(schema.empty_table(), sink)
    parquet_schema = pq.read_metadata(io.BytesIO(sink.getvalue())).schema
    return tuple(
        (column.path, column.physical_type in ("FLOAT", "DOUBLE"))
        for column in (parquet_schema.column(i) for i in range(len(parquet_schema)))
    )


def dictionary_columns(table: pa.Table, row_group_size: int) -> list[str]:
    """The columns of a data file to dictionary-encode.

    In a file of one row group (the small files of frequent commits) only columns with repeated values: for
    mostly distinct ones (ids, names, measurements) building the dictionary costs more than it saves (a
    10,000-row label file was written 2.5x faster and 25% smaller without). Larger files keep dictionaries
    on every column but floats (which rarely repeat), and Parquet falls back to plain pages by itself once a
    dictionary outgrows its page. Types Arrow cannot count distinct values of (nested, dictionary, null)
    keep their dictionary too.
    """
    names = [n for n in table.column_names if n != POS_COLUMN]
    if table.num_rows > row_group_size:
        return [n for n in names if not pa.types.is_floating(table.schema.field(n).type)]
    out = []
    for name in names:
        sample = table.column(name).slice(0, DICTIONARY_SAMPLE)  # counting every value costs as much as it saves
        try:
            repeats = pc.count_distinct(sample, mode="all").as_py() <= len(sample) // 2
        except pa.ArrowNotImplementedError:
            repeats = True
        if repeats:
            out.append(name)
    return out


def write_data_file(
    store: ObjectStore, table: pa.Table, stat_fields: list[pa.Field], options: WriteOptions, layout: Layout
) -> dict[str, Any]:
    """Write one data file (and its record files) and return its manifest row (path, rows, bytes, stats)."""
    sink = io.BytesIO()
    index = table.drop_columns(list(layout.record_fields))
    record_files: list[str] = []
    if layout.record_fields:
        files, positions, written = write_records(
            store,
            table.select(list(layout.record_fields)),
            layout.records,
            options.record_group_size,
            options.max_record_file_bytes,
            options.record_compression,
        )
        index = index.append_column(RECORD_FILE, files).append_column(RECORD_POS, positions)
        record_files = [p for p, _size in written]
    physical = with_positions(index)
    pq.write_table(
        physical,
        sink,
        row_group_size=options.row_group_size,
        compression=codecs(physical.schema, options),
        use_dictionary=dictionary_columns(physical, options.row_group_size),
        # Positions are 0..n-1: delta encoding stores them in almost no space.
        column_encoding={POS_COLUMN: "DELTA_BINARY_PACKED"},
        # A column whose distinct values outgrow this falls back to plain encoding early: a dictionary of
        # near-unique values (keys, timestamps, scores) saves nothing and decodes slower. Measured on the
        # 1M-row label table: files 26% smaller, full reads 10-20% less CPU than with the default 1 MiB.
        dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
        write_statistics=True,
    )
    data = sink.getvalue()
    path = f"{DATA_DIR}/{uuid.uuid4().hex}.parquet"
    store.write_bytes(path, data)
    if options.log_row_images and physical.num_rows <= options.row_group_size:
        # Its commit reads these rows back for the new rows' images, and later commits for the old rows of
        # keys they update again (a hot key lives in the newest file).
        ROW_GROUPS.remember(store, path, physical)
    row: dict[str, Any] = {
        "path": path,
        "rows": table.num_rows,
        "deleted": 0,
        "bytes": len(data),
        "dv": None,
        "dv_bytes": None,
        "records": record_files,
    }
    row.update(stats.compute(table, stat_fields))
    return row


# Decoded row groups of data files for row images: each small commit's old rows are spread over the table's
# large files, so without it every commit decodes nearly every row group of them again.
ROW_GROUP_CACHE_BYTES = 256 << 20
# (store, data file, row group, stored columns read)
GroupKey = tuple[str, str, int, tuple[str, ...]]


class RowGroupCache:
    """Decoded row groups of data files within a byte budget, and the row group bounds of their files.

    Data files are written once under fresh names, so an entry never goes stale. Groups larger than the
    budget are not kept.
    """

    def __init__(self, limit: int = ROW_GROUP_CACHE_BYTES) -> None:
        self.groups: ByteLRU[GroupKey, pa.Table] = ByteLRU(limit, lambda t: t.nbytes, keep_oversized=False)
        # A read whose row groups are all cached opens no file; bounds are tiny next to the groups.
        self.starts: ByteLRU[tuple[str, str], np.ndarray[Any, Any]] = ByteLRU(
            max(limit >> 8, 1), lambda s: s.nbytes, keep_oversized=False
        )

    def remember(self, store: ObjectStore, path: str, physical: pa.Table) -> None:
        """Keep a new one-row-group data file's stored rows as read_physical() would read them.

        A copy: the input may be a slice of a larger table that the cache must not keep alive.
        """
        stored = physical.drop_columns([POS_COLUMN])
        stored = stored.take(pa.array(np.arange(stored.num_rows, dtype=np.int64))).combine_chunks()
        self.starts.put((store.uri, path), np.array([0, stored.num_rows], dtype=np.int64))
        self.groups.put((store.uri, path, 0, tuple(stored.column_names)), stored)


ROW_GROUPS = RowGroupCache()


def read_physical(
    store: ObjectStore,
    layout: Layout,
    path: str,
    positions: np.ndarray[Any, Any],
    physical: list[str],
    cache: RowGroupCache | None = None,
) -> pa.Table:
    """Stored columns `physical` of the rows at the given positions of one data file, in the order given.

    Only the row groups holding a wanted position are read, and with `cache` only those it does not hold.
    """

    @functools.cache
    def parquet() -> pq.ParquetFile:
        fs, root = store.arrow_fs()
        return pq.ParquetFile(f"{root}/{path}", filesystem=fs)

    starts = None if cache is None else cache.starts.get((store.uri, path))
    if starts is None:
        meta = parquet().metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        if cache is not None:
            cache.starts.put((store.uri, path), starts)
    wanted = np.asarray(positions, dtype=np.int64)
    if len(wanted) == 0:
        return parquet().schema_arrow.empty_table().select(physical)
    group_of = np.searchsorted(starts, wanted, side="right") - 1
    parts, where = [], []
    # Group by group (a take from one chunk per column copies only the taken rows; a take across chunks
    # costs several times more), then back to the order asked.
    for g in np.unique(group_of).tolist():
        key = (store.uri, path, g, tuple(physical))
        group = None if cache is None else cache.groups.get(key)
        if group is None:
            group = parquet().read_row_group(g, columns=physical).select(physical).combine_chunks()
            if cache is not None:
                cache.groups.put(key, group)
        at = np.nonzero(group_of == g)[0]
        parts.append(group.take(pa.array(wanted[at] - starts[g])))
        where.append(at)
    table = pa.concat_tables(parts)
    return table.take(pa.array(np.argsort(np.concatenate(where), kind="stable")))


def read_positions(
    store: ObjectStore, layout: Layout, path: str, positions: np.ndarray[Any, Any], columns: list[str]
) -> pa.Table:
    """Rows at the given physical positions of one data file, in the order given (records fetched)."""
    return layout.resolve(read_physical(store, layout, path, positions, layout.physical_columns(columns)), columns)

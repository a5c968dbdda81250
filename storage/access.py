"""Random access by row index over one pinned snapshot, for training loops (PyTorch, Grain).

Row `i` of a snapshot is the i-th live row when the manifest's files are laid end to end, in manifest
order, skipping deleted positions. The index is built once from the manifest and the deletion vectors:
per file the cumulative count of live rows before it, and its deleted positions rewritten so that the
physical position of the file's k-th live row is one binary search away. Index columns are read from
Parquet one row group at a time into a per-process LRU cache bounded in bytes (for a small dataset that
is every row group, so each file is read once); record fields are read by address through the
RecordReader, which groups a batch's reads per record file and reads files in parallel.

Fork safety: a forked child (a DataLoader worker under the default start method) inherits the parent's
object as it is, with the parent's open ArrayRecord readers (C++ handles bound to the parent's ArrayRecord
thread pool, whose threads do not exist in the child), the parent's store clients and locks that another
parent thread may have held at the fork. So every RandomAccess in the child is rebuilt right after the fork
from its pickled state, exactly as a spawned worker gets it: its own store, record reader and caches.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import pickle
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from . import manifest as mf
from .datafiles import Layout
from .errors import InvalidInputError
from .io import ObjectStore
from .lru import ByteLRU
from .records import RECORD_FILE, RECORD_POS
from .scan import SnapshotFiles

DEFAULT_CACHE_BYTES = 256 << 20

Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Group:
    """One cached row group: the batch (for takes) and its columns (indexing an Array beats a batch)."""

    batch: pa.RecordBatch
    columns: list[pa.Array]


class RandomAccess:
    """Rows of one snapshot by index: `len(ra)`, `ra[i]` and `ra.__getitems__([i, ...])` give dicts.

    Indices are stable for the snapshot (resolved once, at creation), so every process that unpickles
    this object sees the same rows in the same order. It is a PyTorch map-style dataset and a Grain
    RandomAccessDataSource as is; DataLoader workers each open their own files and caches.
    """

    def __init__(self, snap: SnapshotFiles, snapshot_id: int, columns: Sequence[str], cache_bytes: int) -> None:
        layout = snap.layout
        self._store: ObjectStore = snap.store
        self._layout: Layout = layout
        self._snapshot_id = snapshot_id
        self._columns = list(columns)
        self._physical = layout.physical_columns(self._columns)
        self._index_columns = [c for c in self._columns if c not in layout.record_fields]
        self._record_schema = layout.records.schema
        # Rows are assembled index columns first, then record fields; reorder only if asked otherwise.
        self._wanted_records = {c for c in layout.record_fields if c in self._columns}
        self._wants_records = bool(self._wanted_records)
        self._reorder = self._index_columns + [c for c in layout.record_fields if c in self._columns] != self._columns
        self._cache_bytes = cache_bytes
        rows = snap.manifest.select(["path", "rows", "deleted", "dv"]).to_pylist()
        self._paths: list[str] = [r["path"] for r in rows]
        # Per file, deleted position d[j] minus j: the number of live rows before d[j]. The k-th live row of
        # the file sits at k + (how many of these are <= k), so only deletions are held, never all positions.
        self._skips: list[Int64s | None] = [
            _skips(mf.deleted_positions(snap.store, r)) if r["dv"] else None for r in rows
        ]
        live = np.array([r["rows"] - r["deleted"] for r in rows], dtype=np.int64)
        self._starts: Int64s = np.concatenate([np.zeros(1, np.int64), np.cumsum(live)])
        self._starts_list: list[int] = self._starts.tolist()  # bisect on a list beats numpy for one index
        self._open_caches()
        _LIVE.add(self)

    def _open_caches(self) -> None:
        self._groups: ByteLRU[tuple[int, int], _Group] = ByteLRU(
            self._cache_bytes, lambda g: g.batch.nbytes, keep_oversized=True
        )
        self._files: dict[int, tuple[pq.FileMetaData, list[int]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Caches are per process: a DataLoader worker starts with empty ones.
        state = dict(self.__dict__)
        del state["_groups"], state["_files"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_caches()
        _LIVE.add(self)

    def _reopen(self) -> None:
        """Drop everything inherited from the parent process for fresh copies, as a spawned worker has."""
        self.__setstate__(pickle.loads(pickle.dumps(self.__getstate__())))

    def __repr__(self) -> str:
        return f"RandomAccess({self._store.uri!r}, snapshot={self._snapshot_id}, rows={len(self)})"

    @property
    def snapshot_id(self) -> int:
        """The snapshot these rows belong to."""
        return self._snapshot_id

    @property
    def columns(self) -> list[str]:
        """The keys of every row dict."""
        return list(self._columns)

    def __len__(self) -> int:
        return self._starts_list[-1]

    def __getitem__(self, index: SupportsIndex) -> dict[str, Any]:
        """Row `index` as a dict of column values (negative indices count from the end)."""
        i = self._check(index)
        f = bisect.bisect_right(self._starts_list, i) - 1
        pos = i - self._starts_list[f]
        skips = self._skips[f]
        if skips is not None:
            pos += int(np.searchsorted(skips, pos, side="right"))
        starts = self._file(f)[1]
        g = bisect.bisect_right(starts, pos) - 1
        columns = self._group(f, g).columns
        j = pos - starts[g]
        # The group's columns are the index columns, then (when record fields are wanted) the two address columns.
        row = {c: col[j].as_py() for c, col in zip(self._index_columns, columns, strict=False)}
        if self._wants_records:
            path = columns[-2][j].as_py()
            record = None if path is None else self._layout.reader.read_one(path, columns[-1][j].as_py())
            row.update(self._record_values(record))
        return {c: row[c] for c in self._columns} if self._reorder else row

    def __getitems__(self, indices: Sequence[SupportsIndex]) -> list[dict[str, Any]]:
        """Rows at many indices, in the order given; reads are grouped by file and row group."""
        gathered = self._gather(indices)
        # Built column by column (one conversion per column, record fields decoded for the whole batch),
        # then zipped into rows: per-row work is only the dict itself.
        values = {c: gathered.column(c).to_pylist() for c in self._index_columns}
        if self._wants_records:
            records = self._layout.reader.read(gathered.column(RECORD_FILE), gathered.column(RECORD_POS))
            decoded = zip(self._record_schema.names, self._layout.records.columns(records), strict=True)
            values.update((name, v) for name, v in decoded if name in self._wanted_records)
        names = self._columns
        return [dict(zip(names, row, strict=True)) for row in zip(*(values[c] for c in names), strict=True)]

    def table(self, indices: Sequence[SupportsIndex]) -> pa.Table:
        """Rows at many indices as an Arrow table, in the order given."""
        return self._layout.resolve(self._gather(indices), self._columns)

    def _check(self, index: SupportsIndex) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise InvalidInputError(f"row index must be an integer, got {type(index).__name__}") from None
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            # IndexError (not a storage error): sequence iteration and samplers rely on it.
            raise IndexError(f"row index {index} is out of range for {n} rows")
        return i

    def _check_many(self, indices: Sequence[SupportsIndex]) -> Int64s:
        given = np.asarray(indices)
        if given.size == 0:
            return np.zeros(0, dtype=np.int64)
        if given.ndim != 1 or given.dtype.kind not in "iu":
            raise InvalidInputError(f"row indices must be a flat sequence of integers, got {given.dtype} values")
        n = len(self)
        wanted = np.where(given < 0, given + n, given).astype(np.int64)
        bad = (wanted < 0) | (wanted >= n)
        if bad.any():
            raise IndexError(f"row index {given[bad][0]} is out of range for {n} rows")
        return wanted

    def _locate(self, indices: Int64s) -> tuple[Int64s, Int64s]:
        """File numbers and physical positions of (checked) global row indices."""
        files = np.searchsorted(self._starts, indices, side="right") - 1
        positions = indices - self._starts[files]
        for f in np.unique(files).tolist():
            skips = self._skips[f]
            if skips is not None:
                mask = files == f
                positions[mask] += np.searchsorted(skips, positions[mask], side="right")
        return files, positions

    def _gather(self, indices: Sequence[SupportsIndex]) -> pa.Table:
        """Index columns and record addresses of the rows at `indices`, in that order."""
        files, positions = self._locate(self._check_many(indices))
        order = np.lexsort((positions, files))
        parts = []
        for f in np.unique(files).tolist():
            pos = positions[order[files[order] == f]]
            starts = np.asarray(self._file(f)[1], dtype=np.int64)
            groups = np.searchsorted(starts, pos, side="right") - 1
            for g in np.unique(groups).tolist():
                parts.append(self._group(f, g).batch.take(pa.array(pos[groups == g] - starts[g])))
        physical = self._layout.physical_schema
        schema = pa.schema([physical.field(c) for c in self._physical])
        gathered = pa.Table.from_batches(parts, schema=schema).combine_chunks()
        # `parts` follow `order`; put the rows back where the caller asked for them.
        restore = np.empty_like(order)
        restore[order] = np.arange(len(order))
        return gathered.take(pa.array(restore))

    def _record_values(self, record: bytes | None) -> dict[str, Any]:
        values = self._layout.records.values(record)
        return {f.name: v for f, v in zip(self._record_schema, values, strict=True) if f.name in self._wanted_records}

    def _file(self, f: int) -> tuple[pq.FileMetaData, list[int]]:
        """Parquet metadata of file `f` and the first position of each row group (the row count last)."""
        known = self._files.get(f)
        if known is None:
            fs, root = self._store.arrow_fs()
            meta = pq.read_metadata(f"{root}/{self._paths[f]}", filesystem=fs)
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            known = meta, [0, *itertools.accumulate(sizes)]
            self._files[f] = known  # a racing thread stores an equal value: no lock needed
        return known

    def _group(self, f: int, g: int) -> _Group:
        """Index columns and record addresses of one row group, through the cache."""
        group = self._groups.get((f, g))
        if group is None:
            fs, root = self._store.arrow_fs()
            pf = pq.ParquetFile(f"{root}/{self._paths[f]}", filesystem=fs, metadata=self._file(f)[0])
            # Row groups are never empty, so a combined table is exactly one batch.
            table = pf.read_row_group(g, columns=self._physical).select(self._physical)  # in the asked order
            batch = table.combine_chunks().to_batches()[0]
            group = _Group(batch, batch.columns)
            self._groups.put((f, g), group)
        return group


_LIVE: weakref.WeakSet[RandomAccess] = weakref.WeakSet()


def _reopen_after_fork() -> None:
    for ra in list(_LIVE):
        ra._reopen()


os.register_at_fork(after_in_child=_reopen_after_fork)


def _skips(deleted: Int64s) -> Int64s:
    return np.asarray(deleted, dtype=np.int64) - np.arange(len(deleted), dtype=np.int64)


def random_access(snap: SnapshotFiles, snapshot_id: int, columns: Sequence[str], cache_bytes: int) -> RandomAccess:
    """A RandomAccess over a resolved snapshot; `cache_bytes` bounds the cached index row groups."""
    if cache_bytes < 0:
        raise InvalidInputError(f"cache_bytes must be >= 0, got {cache_bytes}")
    if not columns:
        raise InvalidInputError("columns must name at least one column (or be None for all of them)")
    return RandomAccess(snap, snapshot_id, columns, cache_bytes)

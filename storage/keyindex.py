"""Key indexes: each data file's primary key values, sorted, so a write locates its keys without a scan.

A data file is written once under a fresh name and never changed, so an index built from it can never be
stale: a process builds it the first time a write looks for keys in that file and keeps it in a cache
bounded in bytes. Deletions live in deletion vectors, applied per snapshot, so one index serves every
snapshot holding the file. Only one-column keys of integer-like types are indexed (numpy compares them
exactly); other keys are located by a filtered scan, as before.

A file whose keys come in a few ascending runs (a replace or compaction writes the survivors of each source
file in turn) is indexed as those runs, searched one by one, rather than sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from . import manifest as mf
from . import scan
from .errors import CorruptDatasetError
from .formats import POS_COLUMN
from .lru import ByteLRU
from .scan import FILE_COLUMN, SnapshotFiles

MAX_BYTES = 256 << 20
# Beyond this many distinct keys per file a scan with a join is about as fast, and the index is not worth
# the memory it takes (nor its first build: a sort of the file's keys).
MAX_FILE_ROWS = 16_000_000
SORT_ON_WRITE = 65_536
# Up to this many ascending runs a file's keys are searched run by run (each lookup pays a search per run);
# beyond, they are sorted once.
MAX_RUNS = 8


@dataclass(frozen=True)
class _Index:
    """A file's keys as ascending runs starting at slots `starts`, and the row position of each slot.

    With `order` None the slots are the row positions (the keys in file order, a few runs); otherwise the keys
    are sorted (one run) and `order` maps each slot to its row.
    """

    keys: npt.NDArray[Any]
    order: npt.NDArray[np.int64] | None
    starts: npt.NDArray[np.int64]

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.starts.nbytes + (0 if self.order is None else self.order.nbytes))


def _runs(keys: npt.NDArray[Any]) -> _Index | None:
    """The index of a file's keys (in row order) as their ascending runs; None if there are too many runs."""
    descents = np.flatnonzero(keys[1:] < keys[:-1]) + 1
    if len(descents) >= MAX_RUNS:
        return None
    return _Index(keys, None, np.concatenate(([0], descents)).astype(np.int64))


def _sorted(keys: npt.NDArray[Any]) -> _Index:
    """The index of a file's keys (in row order) as one sorted run."""
    order = np.argsort(keys, kind="stable").astype(np.int64)
    return _Index(keys[order], order, np.zeros(1, np.int64))


def new_cache(limit: int = MAX_BYTES) -> ByteLRU[tuple[str, str], _Index]:
    """An empty index cache of `limit` bytes (indexes larger than that are not kept)."""
    return ByteLRU(limit, lambda index: index.nbytes, keep_oversized=False)


_CACHE = new_cache()


def indexable(field: pa.Field) -> bool:
    """Whether keys of this type are indexed: integers and the temporal types stored as integers."""
    t = field.type
    return bool(pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t))


def _numbers(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    """Integer-like Arrow values as numpy integers (temporal types by their stored integer)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_integer(arr.type):
        arr = arr.view(pa.int32() if arr.type.bit_width == 32 else pa.int64())
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _build(snap: SnapshotFiles, path: str, name: str) -> _Index:
    fs, root = snap.store.arrow_fs()
    try:
        column = pq.read_table(f"{root}/{path}", columns=[name], filesystem=fs).column(name)
    except FileNotFoundError as exc:
        raise CorruptDatasetError(
            f"{snap.store.uri}/{path}: data file is missing; run ds.validate() and restore it or an earlier snapshot"
        ) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(
            f"{snap.store.uri}/{path}: data file is unreadable ({exc}); run ds.validate()"
        ) from exc
    keys = _numbers(column)
    return _runs(keys) or _sorted(keys)


def remember(store_uri: str, path: str, keys: pa.Table) -> None:
    """Index a data file from the keys just written to it (in row order), sparing the next write a read of it.

    Files whose keys come in a few ascending runs (as most ingests and replaces write them) cost a pass over
    their keys; others only up to SORT_ON_WRITE rows, as sorting a large file's keys would slow its write for
    lookups that may never come.
    """
    if keys.num_columns != 1 or not indexable(keys.schema.field(0)) or keys.column(0).null_count:
        return
    if keys.num_rows > MAX_FILE_ROWS:
        return
    values = _numbers(keys.column(0))
    index = _runs(values)
    if index is None and len(values) <= SORT_ON_WRITE:
        index = _sorted(values)
    if index is not None:
        _CACHE.put((store_uri, path), index)


def _index(snap: SnapshotFiles, path: str, name: str) -> _Index:
    key = (snap.store.uri, path)
    index = _CACHE.get(key)
    if index is None:
        index = _build(snap, path, name)
        _CACHE.put(key, index)
    return index


def _hits(index: _Index, wanted: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(index into `wanted`, row position) of every row whose key is among `wanted` (sorted, distinct)."""
    ends = [*index.starts[1:].tolist(), len(index.keys)]
    found = [_run_hits(index.keys[s:e], wanted, s) for s, e in zip(index.starts.tolist(), ends, strict=True)]
    which = np.concatenate([w for w, _ in found])
    slots = np.concatenate([s for _, s in found])
    rows = slots if index.order is None else index.order[slots]
    return which, rows.astype(np.int64, copy=False)


def _run_hits(
    run: npt.NDArray[Any], wanted: npt.NDArray[Any], offset: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(index into `wanted`, slot) of every key of one ascending run among `wanted`."""
    if len(run) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Only the wanted keys within the run's range (runs of a compacted file often cover disjoint ranges).
    lo = int(np.searchsorted(wanted, run[0], side="left"))
    part = wanted[lo : int(np.searchsorted(wanted, run[-1], side="right"))]
    left = np.searchsorted(run, part, side="left")
    within = np.flatnonzero(run[np.minimum(left, len(run) - 1)] == part)
    first, hit = left[within], within + lo
    following = np.minimum(first + 1, len(run) - 1)
    if not np.any((following > first) & (run[following] == wanted[hit])):
        return hit, first + offset  # each key once, as in every sound file
    # Slots first[k], first[k]+1, ... for each wanted key k found more than once (only in a damaged file).
    counts = np.searchsorted(run, wanted[hit], side="right") - first
    which = np.repeat(hit, counts)
    starts = np.repeat(first - (np.cumsum(counts) - counts), counts)
    return which, starts + np.arange(len(which), dtype=np.int64) + offset


def _distinct_sorted(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    # Sort and compare neighbours: numpy 2.4's hash-based np.unique is far slower for large inputs.
    a = np.sort(values)
    return a if len(a) < 2 else a[np.concatenate(([True], a[1:] != a[:-1]))]


def _bounds(snap: SnapshotFiles, name: str) -> tuple[list[Any], list[Any]]:
    """Per manifest row, the file's min and max key as numpy scalars (None where statistics are missing)."""
    out: list[list[Any]] = []
    for side in ("min", "max"):
        column = snap.manifest.column(f"{side}:{name}")
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        numbers = _numbers(column.fill_null(0)) if len(column) else np.empty(0)
        out.append([numbers[i] if valid[i] else None for i in range(len(column))])
    return out[0], out[1]


def locate(snap: SnapshotFiles, keys: pa.Table) -> pa.Table:
    """Where the given keys live (as scan.locate): key columns, row position and data file, one row per live hit.

    Files are skipped by their manifest min/max; the others are searched through their key index.
    """
    names = keys.column_names
    field = snap.schema.field(names[0]) if len(names) == 1 else None
    if field is None or not indexable(field) or keys.column(0).null_count or keys.num_rows == 0:
        return scan.locate(snap, keys)
    if any(r > MAX_FILE_ROWS for r in snap.manifest.column("rows").to_pylist()):
        return scan.locate(snap, keys)
    name = field.name
    wanted = _distinct_sorted(_numbers(keys.column(0)))
    paths = snap.manifest.column("path").to_pylist()
    dvs = snap.manifest.column("dv").to_pylist()
    lows, highs = _bounds(snap, name)
    found_keys, found_pos, found_files = [], [], []
    for i, path in enumerate(paths):
        lo = 0 if lows[i] is None else int(np.searchsorted(wanted, lows[i], side="left"))
        hi = len(wanted) if highs[i] is None else int(np.searchsorted(wanted, highs[i], side="right"))
        if hi <= lo:
            continue
        which, rows = _hits(_index(snap, path, name), wanted[lo:hi])
        deleted = mf.deleted_positions(snap.store, {"dv": dvs[i]})
        if len(deleted) and len(rows):
            at = np.minimum(np.searchsorted(deleted, rows), len(deleted) - 1)
            live = deleted[at] != rows
            which, rows = which[live], rows[live]
        if len(rows) == 0:
            continue
        order = np.argsort(rows, kind="stable")  # rows in file order, as a scan yields them
        found_keys.append(wanted[lo:hi][which[order]])
        found_pos.append(rows[order])
        found_files.append(np.full(len(rows), i, dtype=np.int32))
    schema = pa.schema([field, pa.field(POS_COLUMN, pa.int64()), pa.field(FILE_COLUMN, pa.string())])
    if not found_pos:
        return schema.empty_table()
    values = pa.array(np.concatenate(found_keys))
    files = pa.DictionaryArray.from_arrays(pa.array(np.concatenate(found_files)), pa.array(paths, pa.string()))
    return pa.Table.from_arrays(
        [
            values if values.type == field.type else values.view(field.type),
            pa.array(np.concatenate(found_pos)),
            files.cast(pa.string()),
        ],
        schema=schema,
    )

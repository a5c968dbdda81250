"""Reading a snapshot: prune files by manifest statistics, push filters into Parquet, apply deletions."""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from . import dv, stats
from . import manifest as mf
from .arrow_cache import ArrowCache
from .datafiles import Layout
from .errors import CorruptDatasetError, InvalidInputError
from .formats import POS_COLUMN
from .io import ObjectStore

FILE_COLUMN = "_lh_file"

Rows = TypeVar("Rows", pa.Table, pa.RecordBatch)
T = TypeVar("T")


@dataclass(frozen=True)
class SnapshotFiles:
    """The files of one snapshot as a reader needs them: the store, the schema and the manifest."""

    store: ObjectStore
    layout: Layout
    manifest: pa.Table
    stat_fields: list[pa.Field]
    cache: ArrowCache | None = None  # read data files through decoded copies

    @property
    def schema(self) -> pa.Schema:
        """The dataset's schema."""
        return self.layout.schema

    @property
    def physical_schema(self) -> pa.Schema:
        """Columns as stored in data files."""
        return self.layout.physical_schema


def content_key(snap: SnapshotFiles) -> str:
    """A name for a snapshot's content, for caches: data files and deletion vectors are never renamed or reused."""
    digest = hashlib.sha256(snap.store.uri.encode())
    for row in snap.manifest.select(["path", "dv"]).to_pylist():
        digest.update(f"\n{row['path']}:{row['dv']}".encode())
    return digest.hexdigest()[:32]


_FORMAT = pads.ParquetFileFormat()


def check_filter(snap: SnapshotFiles, filter: pc.Expression | None) -> None:
    """Refuse a filter naming unknown columns even when there is no file to read it against."""
    if filter is None:
        return
    try:
        snap.physical_schema.empty_table().filter(filter)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(
            f"filter {filter} cannot apply to columns {snap.schema.names} (record fields cannot be filtered): {exc}"
        ) from exc


def _selected(snap: SnapshotFiles, filter: pc.Expression | None) -> list[tuple[dict[str, Any], pads.Fragment]]:
    """Manifest rows and Arrow fragments of the files a filter may match."""
    check_filter(snap, filter)
    fs, root = snap.store.arrow_fs()
    rows = snap.manifest.to_pylist()
    if not rows:
        return []
    by_path: dict[str, dict[str, Any]] = {}
    fragments = []
    for row in rows:
        full = f"{root}/{row['path']}"
        by_path[full] = row
        # Statistics matter only to prune by a filter (building them costs ~0.5 ms a file).
        guarantee = stats.guarantee(row, snap.stat_fields) if filter is not None else None
        fragments.append(
            _FORMAT.make_fragment(full, filesystem=fs, partition_expression=guarantee, file_size=row["bytes"])
        )
    if filter is None:
        return [(by_path[f.path], f) for f in fragments]
    dataset = pads.FileSystemDataset(fragments, snap.physical_schema, _FORMAT, fs)
    try:
        kept = list(dataset.get_fragments(filter=filter))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"filter {filter} cannot apply to columns {snap.schema.names}: {exc}") from exc
    return [(by_path[f.path], f) for f in kept]


def pruned_files(snap: SnapshotFiles, filter: pc.Expression | None) -> list[str]:
    """Data files a read with `filter` opens after pruning by manifest statistics."""
    return [row["path"] for row, _fragment in _selected(snap, filter)]


def filter_columns(schema: pa.Schema, filter: pc.Expression) -> set[str]:
    """The columns of `schema` a (valid) filter reads: those it cannot be evaluated without.

    Arrow does not list an expression's fields, so each column the expression's text mentions (a superset:
    literals may mention names too) is left out of an empty table in turn.
    """
    empty = schema.empty_table()
    try:
        text: str | None = str(filter)
    except UnicodeDecodeError:  # Arrow abbreviates long literals, and can cut a UTF-8 character in two
        text = None
    needed = set()
    for name in (n for n in schema.names if text is None or n in text):
        try:
            empty.drop_columns([name]).filter(filter)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            needed.add(name)
    return needed


def _live(table: Rows, deleted: dv.Positions) -> Rows:
    """`table` without the rows whose position is in `deleted` (sorted); it must have the position column."""
    if len(deleted) == 0 or table.num_rows == 0:
        return table
    positions = table.column(POS_COLUMN).to_numpy()
    at = np.minimum(np.searchsorted(deleted, positions), len(deleted) - 1)
    keep = deleted[at] != positions
    return table if keep.all() else table.filter(pa.array(keep))


def _live_range(batch: pa.RecordBatch, deleted: dv.Positions, start: int) -> pa.RecordBatch:
    """`batch`, the rows at positions start.. of its file, without those in `deleted` (sorted)."""
    lo, hi = np.searchsorted(deleted, [start, start + batch.num_rows])
    if lo == hi:
        return batch  # no deletion in this range: no copy
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[deleted[lo:hi] - start] = False
    mask = pa.array(keep)
    # Column by column: RecordBatch.filter took 2x the sum of its columns' filters (1.4 vs 0.6 ms for 64 Ki
    # rows of the bench's 10 label columns, pyarrow 26).
    return pa.RecordBatch.from_arrays([c.filter(mask) for c in batch.columns], schema=batch.schema)


# Threads copying batches without their deleted rows, how many batches a scan keeps in hand meanwhile, and
# the rows below which a batch is copied in place (handing it to a thread would cost more).
DV_THREADS = 2
DV_WINDOW = 8
DV_THREAD_ROWS = 4_096


def _one_phase(
    snap: SnapshotFiles,
    run: list[tuple[dict[str, Any], pads.Fragment]],
    physical: list[str],
    filter: pc.Expression | None,
    batch_size: int | None,
) -> Iterator[tuple[dict[str, Any], pa.RecordBatch]]:
    """(manifest row, batch) of the physical columns of consecutive files, in file order, scanned as one.

    One Arrow scan over all the files reads ahead across them on Arrow's threads (a snapshot often has one
    large file and many small ones). Deletions are applied afterwards: unfiltered, a batch's positions are
    known from the rows of its file before it, so the position column is not read and batches of row ranges
    without deletions pass through uncopied; filtered, the few matching rows are checked by position.
    """
    if not run:
        return
    dvs = {fragment.path: mf.deleted_positions(snap.store, row) for row, fragment in run}
    rows = {fragment.path: row for row, fragment in run}
    by_position = filter is not None and any(len(d) for d in dvs.values()) and POS_COLUMN not in physical
    columns = [*physical, POS_COLUMN] if by_position else physical
    dataset = pads.FileSystemDataset([f for _row, f in run], snap.physical_schema, _FORMAT, snap.store.arrow_fs()[0])
    kwargs: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    scanner = dataset.scanner(columns=columns, filter=filter, **kwargs)
    done: dict[str, int] = {}  # rows of each file already scanned (unfiltered reads)

    def jobs() -> Iterator[tuple[str, pa.RecordBatch, Callable[[], pa.RecordBatch] | None]]:
        for tagged in scanner.scan_batches():
            path, batch = tagged.fragment.path, tagged.record_batch
            deleted = dvs[path]
            if len(deleted) and filter is None:
                start = done.get(path, 0)
                done[path] = start + batch.num_rows
                yield path, batch, partial(_live_range, batch, deleted, start)
            else:
                yield path, batch, partial(_live, batch, deleted) if len(deleted) else None

    for path, batch in _copied_in_order(jobs()):
        if by_position:
            batch = batch.drop_columns([POS_COLUMN])
        if batch.num_rows:
            yield rows[path], batch


def _copied_in_order(
    jobs: Iterable[tuple[T, pa.RecordBatch, Callable[[], pa.RecordBatch] | None]],
) -> Iterator[tuple[T, pa.RecordBatch]]:
    """(tag, batch) of every job in order, the batch replaced by copy() where a job has one (deleted rows
    dropped). Copies run on DV_THREADS threads (in turn, they would add up after the reader produced the last
    batch); each batch leaves once it and those before it are ready, or when DV_WINDOW wait behind it."""
    pending: deque[tuple[T, pa.RecordBatch | Future[pa.RecordBatch]]] = deque()

    def first() -> tuple[T, pa.RecordBatch]:
        tag, value = pending.popleft()
        return tag, value.result() if isinstance(value, Future) else value

    with ThreadPoolExecutor(max_workers=DV_THREADS) as pool:
        for tag, batch, copy in jobs:
            if copy is None:
                pending.append((tag, batch))
            else:
                pending.append((tag, pool.submit(copy) if batch.num_rows >= DV_THREAD_ROWS else copy()))
            while pending and (len(pending) > DV_WINDOW or _ready(pending[0][1])):
                yield first()
        while pending:
            yield first()


def _ready(value: pa.RecordBatch | Future[pa.RecordBatch]) -> bool:
    return not isinstance(value, Future) or value.done()


# Phase 2 of a two-phase read decodes this many rows of row groups at a time (bounding its memory).
PHASE2_ROWS = 256 * 1024
# A second pass costs about as much as it saves unless the other columns are much wider than the filter's:
# measured on the 1M-row label table (other columns 5x the filter's), two phases were 1.1-1.4x slower.
TWO_PHASE_WIDTH = 8


def _worth_two_phases(fragment: pads.ParquetFileFragment, first: list[str], filter: pc.Expression) -> bool:
    """Whether phase 2 could skip enough: several row groups survive statistics, with wide other columns."""
    fragment.ensure_complete_metadata()
    groups = [piece.row_groups[0].id for piece in fragment.split_by_row_group(filter)]
    if len(groups) < 2:
        return False  # statistics already narrowed the read to one row group: nothing left to skip
    meta = fragment.metadata
    narrow = wide = 0
    for g in groups:
        rg = meta.row_group(g)
        for i in range(rg.num_columns):
            column = rg.column(i)
            if column.path_in_schema.split(".")[0] in first:
                narrow += column.total_compressed_size
            else:
                wide += column.total_compressed_size
    return wide >= TWO_PHASE_WIDTH * max(narrow, 1)


def _two_phase(
    snap: SnapshotFiles,
    fragment: pads.ParquetFileFragment,
    physical: list[str],
    first: list[str],
    filter: pc.Expression,
    deleted: dv.Positions,
    batch_size: int | None,
) -> Iterator[pa.RecordBatch]:
    """Late materialization for a filtered read of more columns than the filter needs.

    Phase 1 reads the filter's columns and the positions (Arrow skips row groups by statistics and decodes
    the others in parallel) and drops deleted positions. Phase 2 reads the other columns only of the row
    groups holding a hit, a few at a time, and keeps the hit rows. Rows come in file order, as from one phase.
    """
    fragment.ensure_complete_metadata()  # both phases then share one footer read
    hits = _live(fragment.to_table(schema=snap.physical_schema, columns=first, filter=filter), deleted)
    if hits.num_rows == 0:
        return
    hits = hits.combine_chunks()  # hits only
    positions = hits.column(POS_COLUMN).to_numpy()
    meta = fragment.metadata
    sizes = np.array([meta.row_group(g).num_rows for g in range(meta.num_row_groups)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    group_of = np.searchsorted(starts, positions, side="right") - 1
    groups = np.unique(group_of)
    rest = [c for c in physical if c not in first]
    schema = pa.schema([snap.physical_schema.field(c) for c in physical])
    with fragment.open() as source:
        reader = pq.ParquetFile(source, metadata=meta)
        done = 0  # hits already emitted
        while len(groups):
            take = max(1, int(np.searchsorted(np.cumsum(sizes[groups]), PHASE2_ROWS, side="right")))
            chunk, groups = groups[:take], groups[take:]
            part = reader.read_row_groups(chunk.tolist(), columns=rest)
            # Offsets of the chunk's groups inside `part`, which holds them in ascending order, concatenated.
            offsets = np.concatenate([[0], np.cumsum(sizes[chunk])])
            end = done + int(np.isin(group_of[done:], chunk).sum())
            at = offsets[np.searchsorted(chunk, group_of[done:end])] + positions[done:end] - starts[group_of[done:end]]
            if end - done < part.num_rows:
                part = part.take(pa.array(at))
            picked = hits.slice(done, end - done)
            arrays = [picked.column(c) if c in first else part.column(c) for c in physical]
            yield from pa.Table.from_arrays(arrays, schema=schema).to_batches(max_chunksize=batch_size)
            done = end


def _cached(
    snap: SnapshotFiles,
    cache: ArrowCache,
    row: dict[str, Any],
    physical: list[str],
    filter: pc.Expression | None,
    batch_size: int | None,
) -> Iterator[pa.RecordBatch]:
    """The live rows of one data file matching `filter`, from its decoded copies: the copy of its live
    rows where one is kept, else the copy of all its rows, deleted ones dropped. An unfiltered read of a
    file with deletions keeps a copy of its live rows for the next read of that version."""
    deleted = mf.deleted_positions(snap.store, row)
    table = cache.live(snap.store, row, snap.physical_schema) if len(deleted) else None
    if table is None:
        table = cache.table(snap.store, row, snap.physical_schema)
    else:
        deleted = deleted[:0]
    if filter is not None:
        table = table.filter(filter)
        if len(deleted):
            table = _live(table, deleted)
    elif len(deleted):
        yield from _keeping_live(snap, cache, row, table, deleted, physical, batch_size)
        return
    for batch in table.select(physical).to_batches(max_chunksize=batch_size):
        if batch.num_rows:
            yield batch


def _keeping_live(
    snap: SnapshotFiles,
    cache: ArrowCache,
    row: dict[str, Any],
    table: pa.Table,
    deleted: dv.Positions,
    physical: list[str],
    batch_size: int | None,
) -> Iterator[pa.RecordBatch]:
    """The live rows of every column of `table` (a whole data file), written to the cache as they are
    copied; the asked-for columns are yielded meanwhile."""
    batches = table.to_batches()
    starts = itertools.accumulate((b.num_rows for b in batches), initial=0)
    jobs = ((None, b, partial(_live_range, b, deleted, at)) for b, at in zip(batches, starts, strict=False))
    with cache.keeping_live(snap.store, row, snap.physical_schema) as copy:
        for _tag, batch in _copied_in_order(jobs):
            copy.add(batch)
            selected = batch.select(physical)
            parts = [selected] if batch_size is None else pa.Table.from_batches([selected]).to_batches(batch_size)
            yield from (b for b in parts if b.num_rows)


def _resolve(layout: Layout, batch: pa.RecordBatch, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The asked-for columns of a batch of physical columns, record fields fetched (one batch, no copies)."""
    if not any(c in layout.record_fields for c in columns):
        yield batch.select(list(columns))
        return
    yield from layout.resolve(pa.Table.from_batches([batch]), columns).to_batches()


def file_batches(
    snap: SnapshotFiles,
    columns: Sequence[str],
    filter: pc.Expression | None = None,
    batch_size: int | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(data file path, batch) for every live row matching `filter`; columns may include the position.

    A filtered read of columns the filter does not need goes in two phases (see `_two_phase`) where that can
    pay (`_worth_two_phases`); others, and unfiltered reads, in one, consecutive such files by one scan.
    """
    physical = snap.layout.physical_columns(columns)
    selected = _selected(snap, filter)
    first: list[str] = []
    if filter is not None and selected:
        needed = filter_columns(snap.physical_schema, filter)
        if any(c not in needed and c != POS_COLUMN for c in physical):
            first = [c for c in physical if c in needed and c != POS_COLUMN] + [POS_COLUMN]

    def parts() -> Iterator[tuple[dict[str, Any], pa.RecordBatch]]:
        if snap.cache is not None:
            for row, _fragment in selected:
                for batch in _cached(snap, snap.cache, row, physical, filter, batch_size):
                    yield row, batch
            return
        run: list[tuple[dict[str, Any], pads.Fragment]] = []  # files read by one scan
        for row, fragment in selected:
            if first and filter is not None and _worth_two_phases(fragment, first, filter):
                yield from _one_phase(snap, run, physical, filter, batch_size)
                run = []
                deleted = mf.deleted_positions(snap.store, row)
                for batch in _two_phase(snap, fragment, physical, first, filter, deleted, batch_size):
                    yield row, batch
            else:
                run.append((row, fragment))
        yield from _one_phase(snap, run, physical, filter, batch_size)

    try:
        for row, batch in parts():
            for resolved in _resolve(snap.layout, batch, columns):
                yield row["path"], resolved
    except FileNotFoundError as exc:
        missing = next((row["path"] for row, _f in selected if not snap.store.exists(row["path"])), None)
        if missing is None:
            raise
        raise CorruptDatasetError(
            f"{snap.store.uri}/{missing}: data file is missing; run ds.validate() and restore it or an earlier snapshot"
        ) from exc
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"cannot read {columns} with filter {filter}: {exc}") from exc


def count(snap: SnapshotFiles, filter: pc.Expression | None) -> int:
    """Live rows matching `filter`."""
    if filter is None:
        return mf.live_rows(snap.manifest)
    total = 0
    for row, fragment in _selected(snap, filter):
        deleted = mf.deleted_positions(snap.store, row)
        if len(deleted):
            hits = fragment.to_table(schema=snap.physical_schema, filter=filter, columns=[POS_COLUMN])
            total += _live(hits, deleted).num_rows
        else:
            total += fragment.scanner(schema=snap.physical_schema, filter=filter, columns=[]).count_rows()
    return total


# Above this many keys an `isin` filter costs more than it saves: Arrow builds its hash set of the keys anew
# for every file it filters (a full view refresh spent seconds there), so callers match by one join instead.
ISIN_MAX_KEYS = 65_536


def key_filter(keys: pa.Table, exact: bool = True) -> pc.Expression:
    """A filter matching (a superset of) the given keys, with ranges so files can be pruned by statistics.

    With `exact=False` and more than ISIN_MAX_KEYS keys it keeps only the ranges: the caller joins.
    """
    expr: pc.Expression = pc.scalar(True)
    for name in keys.column_names:
        col = keys.column(name)
        field = pc.field(name)
        if stats.statable(pa.field(name, col.type)) and len(col):
            mm = pc.min_max(col)
            expr = expr & (field >= mm["min"]) & (field <= mm["max"])
        if exact or keys.num_rows <= ISIN_MAX_KEYS:
            expr = expr & field.isin(pc.unique(col))
    return expr


def locations(snap: SnapshotFiles, keys: list[str], filter: pc.Expression | None = None) -> pa.Table:
    """Key columns, row position and data file of every live row matching `filter`."""
    schema = pa.schema(
        [
            *(snap.schema.field(k) for k in keys),
            pa.field(POS_COLUMN, pa.int64()),
            pa.field(FILE_COLUMN, pa.string()),
        ]
    )
    parts = []
    for path, batch in file_batches(snap, [*keys, POS_COLUMN], filter):
        parts.append(
            pa.Table.from_batches([batch]).append_column(FILE_COLUMN, pa.array([path] * batch.num_rows, pa.string()))
        )
    return pa.concat_tables(parts).cast(schema) if parts else schema.empty_table()


def locate(snap: SnapshotFiles, keys: pa.Table) -> pa.Table:
    """Where the given keys live: key columns, row position and data file path, one row per live hit."""
    names = keys.column_names
    if keys.num_rows == 0:
        return locations(snap, names, pc.scalar(False))
    many = keys.num_rows > ISIN_MAX_KEYS
    hits = locations(snap, names, key_filter(keys, exact=not many))
    if len(names) > 1 or many:  # isin per column over-matches combinations of key values; ranges match more
        distinct = keys.group_by(names).aggregate([]) if many else keys  # one hit per live row, as isin gives
        hits = hits.join(distinct, keys=names, join_type="inner").select(hits.column_names)
    return hits

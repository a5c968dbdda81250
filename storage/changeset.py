"""Net change between two snapshots per primary key, computed from change logs (O(changes)).

A key's state is its row location (data file, position) or absent. Change logs record, per commit, where
each touched key's row was and where it is now, so composing them along a path of commits gives the
state at both ends without scanning data files. When no such path exists (expired snapshots), the two
snapshots' key locations are compared instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import bits
from . import changes as ch
from .beside import beside
from .context import DatasetContext
from .errors import CorruptDatasetError
from .formats import POS_COLUMN
from .groups import first_last, key_groups
from .lineage import common_ancestor, first_parent_path, logs_along
from .log import LogEntry
from .scan import locations

FROM_FILE, FROM_POS, TO_FILE, TO_POS, MOVE_ONLY = "_from_file", "_from_pos", "_to_file", "_to_pos", "_move_only"
# Row of the row-image pool holding a key's content at the start (FROM_REF) or end (TO_REF), when a change
# log recorded it; null means "read it at FROM/TO file and position".
FROM_REF, TO_REF = "_from_ref", "_to_ref"
# The row-image pool: one array, or (for a diff in batches) the change logs' image columns left as chunks.
Pool: TypeAlias = pa.Array | pa.ChunkedArray


def _net_schema(ctx: DatasetContext, files: pa.DataType | None = None) -> pa.Schema:
    """The net change's columns; `files` is how its file columns hold paths (strings by default, or
    dictionary-encoded as change logs store them)."""
    files = files or pa.string()
    return pa.schema(
        [
            *ctx.key_schema,
            pa.field(FROM_FILE, files),
            pa.field(FROM_POS, pa.int64()),
            pa.field(TO_FILE, files),
            pa.field(TO_POS, pa.int64()),
            pa.field(MOVE_ONLY, pa.bool_()),
            pa.field(FROM_REF, pa.int64()),
            pa.field(TO_REF, pa.int64()),
        ]
    )


def pool_type(ctx: DatasetContext) -> pa.StructType:
    """Type of a row image: the stored columns of a row (record fields as their addresses).

    Every field nullable: a change without an image is a null struct whose children are null too, which a
    non-nullable key field cannot hold (Arrow then refuses every cast of the column).
    """
    return pa.struct([f.with_nullable(True) for f in ctx.layout.physical_schema if f.name != POS_COLUMN])


def _empty_pool(ctx: DatasetContext) -> pa.Array:
    return pa.array([], pool_type(ctx))


def net_along(ctx: DatasetContext, path: Sequence[LogEntry], join_up_to: int | None = None) -> tuple[pa.Table, Pool]:
    """Per key touched along `path` (oldest first): location before the first and after the last commit.

    Also the row-image pool of the path: FROM_REF and TO_REF index the key's content before and after the
    path when the change logs recorded it. Keys changed once come first, in order of their change, so their
    FROM_REF and TO_REF ascend together: pooled_rows() then reads the pool front to back. A pool of more
    than `join_up_to` rows (None: no limit) keeps the logs' image columns as they are (chunks of mapped logs
    hold no heap) instead of being copied into one array.
    """
    logs = logs_along(path)
    try:
        parts = ch.load_all(ctx.store, logs)
    except CorruptDatasetError:
        plain = logs_along(path, use_rollups=False)
        if plain == logs:
            raise
        # A roll-up is only a shortcut: if one is unreadable, the commits' own logs say the same.
        parts = ch.load_all(ctx.store, plain)
    return compose(ctx, parts, join_up_to)


def compose(ctx: DatasetContext, logs: Sequence[pa.Table], join_up_to: int | None = None) -> tuple[pa.Table, Pool]:
    """net_along() of change tables already loaded, oldest first. Its file columns hold the paths as the
    logs do: dictionary-encoded, or strings when a log held them so."""
    pks = ctx.meta.primary_keys
    parts = [p for p in logs if p.num_rows]
    if not parts:
        return _net_schema(ctx).empty_table(), _empty_pool(ctx)
    stored = [p.drop_columns([c for c in ch.IMAGES if c in p.column_names]) for p in parts]
    if len({p.schema.field("_old_file").type for p in stored} | {p.schema.field("_new_file").type for p in stored}) > 1:
        stored = [ch.plain(p) for p in stored]  # older logs, or a commit's own log, hold the paths as strings
    table = pa.concat_tables(stored, promote_options="permissive")
    # The row-image pool (unless too large) and the rows' locations are joined into whole arrays on the helper
    # thread while this one groups the keys: a take from chunks locates each index's chunk first and costs
    # about twice as much.
    join = join_up_to is None or 2 * table.num_rows <= join_up_to  # an old and a new image per change
    images = beside(_pool, pool_type(ctx), parts, join)
    places = beside(table.select(["_old_file", "_old_pos", "_new_file", "_new_pos"]).combine_chunks)
    n = table.num_rows
    ids, count = key_groups(table.select(pks))
    letters = ch.first_letters(table.column("_change"))
    # A key's first and last change give its location before and after the path. Moves keep content, so
    # its first and last real (non-move) changes give its row images; a key with only moves is unchanged.
    is_move = _is(letters, ch.MOVE)
    first, last = first_last(ids, count)
    first_real, last_real = first_last(ids, count, ~is_move) if is_move.any() else (first, last)
    # Keys changed once first (net_along()'s order); keys changed again follow.
    once = first_real == last_real
    if not once.all():
        order = np.concatenate([np.flatnonzero(once), np.flatnonzero(~once)])
        moved = first_real is not first  # without moves the real changes are the changes: reorder them once
        first, last = first[order], last[order]
        first_real, last_real = (first_real[order], last_real[order]) if moved else (first, last)
    absent_before = _is(letters, ch.INSERT)[first]
    absent_after = _is(letters, ch.DELETE)[last]
    pool, logged = images.result()
    # Null refs: read the row at its file and position instead (not logged, or only moved on this path).
    from_unknown = absent_before | (first_real < 0) | ~logged[:n][first_real]
    to_unknown = absent_after | (last_real < 0) | ~logged[n:][last_real]
    located = places.result()
    after = beside(located.select([2, 3]).take, bits.with_nulls(last, absent_after))
    before = located.select([0, 1]).take(bits.with_nulls(first, absent_before))
    cols = [
        *table.select(pks).take(first).columns,
        *before.columns,
        *after.result().columns,
        bits.to_arrow(first_real < 0),
        bits.with_nulls(first_real, from_unknown),
        bits.with_nulls(last_real + n, to_unknown),
    ]
    return pa.Table.from_arrays(cols, schema=_net_schema(ctx, table.schema.field("_old_file").type)), pool


def _pool(
    image_type: pa.StructType, logs: Sequence[pa.Table], join: bool
) -> tuple[Pool, np.ndarray[Any, np.dtype[np.bool_]]]:
    """Every log's old-row images, then every log's new-row images (compose()'s pool), in one array if
    `join`, and per row of it whether an image was logged."""
    chunks = [chunk for c in ch.IMAGES for p in logs for chunk in _images(image_type, p, c)]
    pool = pa.concat_arrays(chunks) if join else pa.chunked_array(chunks, image_type)
    return pool, bits.valid(pool)


def _is(letters: np.ndarray[Any, np.dtype[np.uint8]], kind: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    same: np.ndarray[Any, np.dtype[np.bool_]] = letters == ord(kind[0])
    return same


def _images(image_type: pa.StructType, log: pa.Table, name: str) -> list[pa.Array]:
    """The chunks of a row-image column of one change log, all null where the log did not record it."""
    if name not in log.column_names:  # a bulk commit's log keeps no new-row images
        return [pa.nulls(log.num_rows, image_type)]
    column = log.column(name)
    return list(column.chunks if column.type.equals(image_type) else column.cast(image_type).chunks)


def _full_compare(ctx: DatasetContext, start: LogEntry, end: LogEntry) -> pa.Table:
    pks = ctx.meta.primary_keys
    a = locations(ctx.files(start), pks).rename_columns([*pks, FROM_POS, FROM_FILE])
    b = locations(ctx.files(end), pks).rename_columns([*pks, TO_POS, TO_FILE])
    joined = a.join(b, keys=pks, join_type="full outer")
    n = joined.num_rows
    joined = joined.append_column(MOVE_ONLY, bits.to_arrow(np.zeros(n, dtype=bool)))
    joined = joined.append_column(FROM_REF, pa.nulls(n, pa.int64())).append_column(TO_REF, pa.nulls(n, pa.int64()))
    return joined.select(_net_schema(ctx).names).cast(_net_schema(ctx))


def net_between(ctx: DatasetContext, start: LogEntry, end: LogEntry, keep_moves: bool = False) -> pa.Table:
    """Per key whose location differs: where it is at `start` and at `end` (null = absent).

    Keys compaction only moved are left out unless `keep_moves` (a merge must know where its target's rows
    are now); they are marked MOVE_ONLY.
    """
    return ch.plain(net_images(ctx, start, end, keep_moves)[0], (FROM_FILE, TO_FILE))


def net_images(
    ctx: DatasetContext, start: LogEntry, end: LogEntry, keep_moves: bool = False, join_up_to: int | None = None
) -> tuple[pa.Table, Pool]:
    """net_between() plus the pool of logged row images its FROM_REF and TO_REF columns index (see
    net_along() for `join_up_to`); its file columns may be dictionary-encoded (a diff never turns most of them into
    strings)."""
    if start.snapshot_id == end.snapshot_id:
        return _net_schema(ctx).empty_table(), _empty_pool(ctx)
    ancestor = common_ancestor(ctx, start, end)
    to_start = first_parent_path(ctx, ancestor, start) if ancestor else None
    to_end = first_parent_path(ctx, ancestor, end) if ancestor else None
    if to_start is None or to_end is None:
        return _drop_unchanged(_full_compare(ctx, start, end), keep_moves), _empty_pool(ctx)
    pks = ctx.meta.primary_keys
    a, pool_a = net_along(ctx, to_start, join_up_to)
    b, pool_b = net_along(ctx, to_end, join_up_to)
    if a.num_rows == 0:
        return _drop_unchanged(b, keep_moves), pool_b
    if b.num_rows == 0:  # `end` is an ancestor of `start`: the path's net change backwards
        backwards = [*pks, TO_FILE, TO_POS, FROM_FILE, FROM_POS, MOVE_ONLY, TO_REF, FROM_REF]
        return _drop_unchanged(a.select(backwards).rename_columns(a.column_names), keep_moves), pool_a
    if a.schema.field(FROM_FILE).type != b.schema.field(FROM_FILE).type:  # one path held older logs
        a, b = ch.plain(a, (FROM_FILE, TO_FILE)), ch.plain(b, (FROM_FILE, TO_FILE))
    names = [FROM_FILE, FROM_POS, TO_FILE, TO_POS, MOVE_ONLY, FROM_REF, TO_REF]
    a = a.append_column("_in_a", bits.to_arrow(np.ones(a.num_rows, dtype=bool))).rename_columns(
        [*pks, *(f"a{c}" for c in names), "_in_a"]
    )
    b = b.append_column("_in_b", bits.to_arrow(np.ones(b.num_rows, dtype=bool))).rename_columns(
        [*pks, *(f"b{c}" for c in names), "_in_b"]
    )
    j = a.join(b, keys=pks, join_type="full outer")
    in_a, in_b = pc.is_valid(j.column("_in_a")), pc.is_valid(j.column("_in_b"))
    offset = len(pool_a)  # one pool for both paths: b's images come after a's
    cols = [
        *(j.column(k) for k in pks),
        pc.if_else(in_a, j.column(f"a{TO_FILE}"), j.column(f"b{FROM_FILE}")),  # state at start
        pc.if_else(in_a, j.column(f"a{TO_POS}"), j.column(f"b{FROM_POS}")),
        pc.if_else(in_b, j.column(f"b{TO_FILE}"), j.column(f"a{FROM_FILE}")),  # state at end
        pc.if_else(in_b, j.column(f"b{TO_POS}"), j.column(f"a{FROM_POS}")),
        pc.and_(pc.or_(pc.invert(in_a), j.column(f"a{MOVE_ONLY}")), pc.or_(pc.invert(in_b), j.column(f"b{MOVE_ONLY}"))),
        pc.if_else(in_a, j.column(f"a{TO_REF}"), pc.add(j.column(f"b{FROM_REF}"), offset)),
        pc.if_else(in_b, pc.add(j.column(f"b{TO_REF}"), offset), j.column(f"a{FROM_REF}")),
    ]
    if isinstance(pool_a, pa.ChunkedArray) or isinstance(pool_b, pa.ChunkedArray):
        pool: Pool = pa.chunked_array([*_chunks(pool_a), *_chunks(pool_b)], pool_a.type)
    else:
        pool = pa.concat_arrays([pool_a, pool_b])
    net = pa.Table.from_arrays(cols, schema=_net_schema(ctx, a.schema.field(f"a{FROM_FILE}").type))
    return _drop_unchanged(net, keep_moves), pool


def _chunks(pool: Pool) -> list[pa.Array]:
    return list(pool.chunks) if isinstance(pool, pa.ChunkedArray) else [pool]


def _drop_unchanged(net: pa.Table, keep_moves: bool) -> pa.Table:
    from_pos, to_pos = (net.column(c).to_numpy(zero_copy_only=False) for c in (FROM_POS, TO_POS))
    from_file, to_file = net.column(FROM_FILE), net.column(TO_FILE)
    absent_before, absent_after = ~bits.valid(from_file), ~bits.valid(to_file)
    # Paths are compared only where positions match (rarely): comparing every key's two paths costs more
    # than the rest of the net change.
    same_pos = np.flatnonzero(~absent_before & ~absent_after & (from_pos == to_pos))
    unchanged = absent_before & absent_after
    if same_pos.size:
        same_file = pc.equal(pc.take(from_file, same_pos), pc.take(to_file, same_pos))
        unchanged[same_pos] = same_file.to_numpy(zero_copy_only=False)
    if not keep_moves:
        unchanged |= bits.to_numpy(net.column(MOVE_ONLY))
    return net if not unchanged.any() else net.filter(bits.to_arrow(~unchanged))


def rows_at(
    ctx: DatasetContext, files: pa.ChunkedArray | pa.Array, positions: pa.ChunkedArray | pa.Array, columns: list[str]
) -> pa.Table:
    """Rows at (file, position) pairs, in the given order; every pair must be non-null."""
    schema = pa.schema([ctx.meta.schema.field(c) for c in columns])
    return _gather(files, positions, schema, lambda path, pos: ctx.read_at(path, pos, columns))


def stored_rows_at(
    ctx: DatasetContext, files: pa.ChunkedArray | pa.Array, positions: pa.ChunkedArray | pa.Array
) -> pa.Table:
    """rows_at() as stored: every column, record fields as their addresses (the row-image pool's shape)."""
    schema = pa.schema(list(pool_type(ctx)))
    return _gather(files, positions, schema, lambda path, pos: ctx.read_physical_at(path, pos, schema.names))


def _gather(
    files: pa.ChunkedArray | pa.Array,
    positions: pa.ChunkedArray | pa.Array,
    schema: pa.Schema,
    read: Callable[[str, np.ndarray[Any, Any]], pa.Table],
) -> pa.Table:
    files = files.combine_chunks() if isinstance(files, pa.ChunkedArray) else files
    pos = np.asarray(positions.to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(files) == 0:
        return schema.empty_table()
    encoded = files.dictionary_encode()
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    parts, order = [], []
    for i, path in enumerate(encoded.dictionary.to_pylist()):
        where = np.nonzero(idx == i)[0]
        if not len(where):  # paths arrive dictionary-encoded as logs store them, unused values included
            continue
        # Cast per file: rows one commit cached as it wrote them may differ from a Parquet read in nullability.
        parts.append(read(str(path), pos[where]).cast(schema))
        order.append(where)
    table = pa.concat_tables(parts)
    inverse = np.argsort(np.concatenate(order), kind="stable")
    return table.take(pa.array(inverse))


def rows_known(
    ctx: DatasetContext,
    files: pa.ChunkedArray | pa.Array,
    positions: pa.ChunkedArray | pa.Array,
    refs: pa.ChunkedArray | pa.Array,
    pool: Pool,
    columns: list[str],
) -> pa.Table:
    """rows_at(), taking each row from the row-image pool where its ref is set instead of its data file."""
    if refs.null_count == 0:
        return pooled_rows(ctx, refs, pool, columns)
    have = bits.valid(refs)
    if not have.any():
        return rows_at(ctx, files, positions, columns)
    hit, miss = np.nonzero(have)[0], np.nonzero(~have)[0]
    known = pooled_rows(ctx, pc.take(refs, hit), pool, columns)
    read = rows_at(ctx, pc.take(files, miss), pc.take(positions, miss), columns)
    table = pa.concat_tables([known, read])
    return table.take(pa.array(np.argsort(np.concatenate([hit, miss]), kind="stable")))


def _ascending_run(refs: np.ndarray[Any, np.dtype[np.int64]]) -> int:
    """How many of `refs` at the front strictly ascend, 0 if they are too few or too spread out for a
    filter of the pool between the first and last of them to beat a take."""
    if len(refs) < 2:
        return 0
    falls = np.flatnonzero(refs[1:] <= refs[:-1])
    run = int(falls[0]) + 1 if len(falls) else len(refs)
    return run if run >= 64 and refs[run - 1] - refs[0] < 8 * run else 0


def pooled_rows(ctx: DatasetContext, refs: pa.ChunkedArray | pa.Array, pool: Pool, columns: list[str]) -> pa.Table:
    """The rows at `refs` (none null) of the row-image pool, as `columns`.

    Only the stored columns `columns` need are taken (a take of the whole struct would copy them all); the
    pool's own nulls (changes without images) are never referenced, so its fields are taken as they are.
    """
    physical = ctx.layout.physical_columns(columns)
    at = np.asarray(refs.to_numpy(zero_copy_only=False), dtype=np.int64)
    if isinstance(pool, pa.ChunkedArray):
        stored = _taken_by_chunk(pool, physical, at)
    else:
        stored = _taken(_fields(pool, physical), at)
    schema = pa.schema([ctx.meta.schema.field(c) for c in columns])
    return ctx.layout.resolve(stored, columns).cast(schema)


def _fields(pool: pa.Array, names: list[str]) -> pa.RecordBatch:
    """The fields `names` of a pool's rows as they are: RecordBatch.from_struct_array() would first merge the
    struct's nulls into every field (about a millisecond a diff)."""
    return pa.RecordBatch.from_arrays([pool.field(n) for n in names], names=names)


def _taken(rows: pa.RecordBatch, at: np.ndarray[Any, np.dtype[np.int64]]) -> pa.Table:
    """The rows `at` of `rows`."""
    ascending = _ascending_run(at)
    if not ascending:
        return pa.Table.from_batches([rows.take(pa.array(at))])
    # A filter reads the pool front to back, several times faster than a take.
    low = int(at[0])
    mask = np.zeros(int(at[ascending - 1]) - low + 1, dtype=bool)
    mask[at[:ascending] - low] = True
    parts = [rows.slice(low, len(mask)).filter(bits.to_arrow(mask))]
    if ascending < len(at):
        parts.append(rows.take(pa.array(at[ascending:])))
    return pa.Table.from_batches(parts)


def _taken_by_chunk(pool: pa.ChunkedArray, names: list[str], at: np.ndarray[Any, np.dtype[np.int64]]) -> pa.Table:
    """_taken() of the fields `names` from a pool left in chunks, one chunk at a time: Arrow's take from a
    chunked array joins its chunks first, a copy of the whole pool for every batch of a diff."""
    ends = np.cumsum([len(c) for c in pool.chunks])
    chunk = np.searchsorted(ends, at, side="right")
    # Refs of keys changed once ascend, so their chunks come in order; only the rest are regrouped.
    falls = np.flatnonzero(chunk[1:] < chunk[:-1])
    run = int(falls[0]) + 1 if len(falls) else len(at)
    front = _in_chunks(pool, names, ends, at[:run], chunk[:run])
    if run == len(at):
        return front
    order = np.argsort(chunk[run:], kind="stable")
    back = _in_chunks(pool, names, ends, at[run:][order], chunk[run:][order])
    return pa.concat_tables([front, back.take(pa.array(np.argsort(order)))])


def _in_chunks(
    pool: pa.ChunkedArray,
    names: list[str],
    ends: np.ndarray[Any, np.dtype[np.int64]],
    at: np.ndarray[Any, np.dtype[np.int64]],
    chunk: np.ndarray[Any, np.dtype[np.intp]],
) -> pa.Table:
    """Rows `at` of the pool, which lie in the chunks `chunk` (in ascending order)."""
    bounds = np.searchsorted(chunk, np.arange(len(ends) + 1))
    tables = [pa.schema([pool.type.field(n) for n in names]).empty_table()]
    for c in np.flatnonzero(bounds[1:] > bounds[:-1]):
        rows = _fields(pool.chunks[c], names)
        tables.append(_taken(rows, at[bounds[c] : bounds[c + 1]] - (ends[c] - len(rows))))
    return pa.concat_tables(tables)

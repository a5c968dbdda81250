"""Net change between two snapshots per primary key, computed from change logs (O(changes)).

A key's state is its row location (data file, position) or absent. Change logs record, per commit, where
each touched key's row was and where it is now, so composing them along a path of commits gives the
state at both ends without scanning data files. When no such path exists (expired snapshots), the two
snapshots' key locations are compared instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import changes as ch
from .context import DatasetContext
from .lineage import common_ancestor, first_parent_path
from .log import LogEntry
from .scan import locations

FROM_FILE, FROM_POS, TO_FILE, TO_POS, MOVE_ONLY = "_from_file", "_from_pos", "_to_file", "_to_pos", "_move_only"
_NULL_AGG = pc.ScalarAggregateOptions(skip_nulls=False)


def _net_schema(ctx: DatasetContext) -> pa.Schema:
    return pa.schema(
        [
            *ctx.key_schema,
            pa.field(FROM_FILE, pa.string()),
            pa.field(FROM_POS, pa.int64()),
            pa.field(TO_FILE, pa.string()),
            pa.field(TO_POS, pa.int64()),
            pa.field(MOVE_ONLY, pa.bool_()),
        ]
    )


def net_along(ctx: DatasetContext, path: Sequence[LogEntry]) -> pa.Table:
    """Per key touched along `path` (oldest first): location before the first and after the last commit."""
    pks = ctx.meta.primary_keys
    parts = [ch.read(ctx.store, e.changes) for e in path if e.changes]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return _net_schema(ctx).empty_table()
    table = pa.concat_tables(parts)
    table = table.append_column("_is_move", pc.equal(table.column("_change"), ch.MOVE))
    agg = table.group_by(pks, use_threads=False).aggregate(
        [
            ("_change", "first", _NULL_AGG),
            ("_old_file", "first", _NULL_AGG),
            ("_old_pos", "first", _NULL_AGG),
            ("_change", "last", _NULL_AGG),
            ("_new_file", "last", _NULL_AGG),
            ("_new_pos", "last", _NULL_AGG),
            ("_is_move", "min"),
        ]
    )
    absent_before = pc.equal(agg.column("_change_first"), ch.INSERT)
    absent_after = pc.equal(agg.column("_change_last"), ch.DELETE)

    def unless(mask: pa.ChunkedArray, col: str) -> pa.ChunkedArray:
        values = agg.column(col)
        return pc.if_else(mask, pa.scalar(None, values.type), values)

    cols = [
        *(agg.column(k) for k in pks),
        unless(absent_before, "_old_file_first"),
        unless(absent_before, "_old_pos_first"),
        unless(absent_after, "_new_file_last"),
        unless(absent_after, "_new_pos_last"),
        agg.column("_is_move_min"),
    ]
    return pa.Table.from_arrays(cols, schema=_net_schema(ctx))


def _full_compare(ctx: DatasetContext, start: LogEntry, end: LogEntry) -> pa.Table:
    pks = ctx.meta.primary_keys
    a = locations(ctx.files(start), pks).rename_columns([*pks, FROM_POS, FROM_FILE])
    b = locations(ctx.files(end), pks).rename_columns([*pks, TO_POS, TO_FILE])
    joined = a.join(b, keys=pks, join_type="full outer")
    joined = joined.append_column(MOVE_ONLY, pa.array(np.zeros(joined.num_rows, dtype=bool)))
    return joined.select(_net_schema(ctx).names).cast(_net_schema(ctx))


def net_between(ctx: DatasetContext, start: LogEntry, end: LogEntry) -> pa.Table:
    """Per key whose location differs: where it is at `start` and at `end` (null = absent)."""
    if start.snapshot_id == end.snapshot_id:
        return _net_schema(ctx).empty_table()
    ancestor = common_ancestor(ctx, start, end)
    to_start = first_parent_path(ctx, ancestor, start) if ancestor else None
    to_end = first_parent_path(ctx, ancestor, end) if ancestor else None
    if to_start is None or to_end is None:
        return _drop_unchanged(_full_compare(ctx, start, end))
    pks = ctx.meta.primary_keys
    a = net_along(ctx, to_start)
    b = net_along(ctx, to_end)
    if a.num_rows == 0:
        return _drop_unchanged(b)
    a = a.append_column("_in_a", pa.array([True] * a.num_rows, pa.bool_())).rename_columns(
        [*pks, "a_from_file", "a_from_pos", "a_to_file", "a_to_pos", "a_move", "_in_a"]
    )
    b = b.append_column("_in_b", pa.array([True] * b.num_rows, pa.bool_())).rename_columns(
        [*pks, "b_from_file", "b_from_pos", "b_to_file", "b_to_pos", "b_move", "_in_b"]
    )
    j = a.join(b, keys=pks, join_type="full outer")
    in_a, in_b = pc.is_valid(j.column("_in_a")), pc.is_valid(j.column("_in_b"))
    cols = [
        *(j.column(k) for k in pks),
        pc.if_else(in_a, j.column("a_to_file"), j.column("b_from_file")),  # state at start
        pc.if_else(in_a, j.column("a_to_pos"), j.column("b_from_pos")),
        pc.if_else(in_b, j.column("b_to_file"), j.column("a_from_file")),  # state at end
        pc.if_else(in_b, j.column("b_to_pos"), j.column("a_from_pos")),
        pc.and_(pc.or_(pc.invert(in_a), j.column("a_move")), pc.or_(pc.invert(in_b), j.column("b_move"))),
    ]
    return _drop_unchanged(pa.Table.from_arrays(cols, schema=_net_schema(ctx)))


def _drop_unchanged(net: pa.Table) -> pa.Table:
    same_file = pc.fill_null(pc.equal(net.column(FROM_FILE), net.column(TO_FILE)), False)
    same_pos = pc.fill_null(pc.equal(net.column(FROM_POS), net.column(TO_POS)), False)
    both_absent = pc.and_(pc.is_null(net.column(FROM_FILE)), pc.is_null(net.column(TO_FILE)))
    unchanged = pc.or_(pc.or_(pc.and_(same_file, same_pos), both_absent), pc.fill_null(net.column(MOVE_ONLY), False))
    return net.filter(pc.invert(unchanged))


def rows_at(
    ctx: DatasetContext, files: pa.ChunkedArray | pa.Array, positions: pa.ChunkedArray | pa.Array, columns: list[str]
) -> pa.Table:
    """Rows at (file, position) pairs, in the given order; every pair must be non-null."""
    files = files.combine_chunks() if isinstance(files, pa.ChunkedArray) else files
    pos = np.asarray(positions.to_numpy(zero_copy_only=False), dtype=np.int64)
    schema = pa.schema([ctx.meta.schema.field(c) for c in columns])
    if len(files) == 0:
        return schema.empty_table()
    encoded = files.dictionary_encode()
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    parts, order = [], []
    for i, path in enumerate(encoded.dictionary.to_pylist()):
        where = np.nonzero(idx == i)[0]
        parts.append(ctx.read_at(str(path), pos[where], columns))
        order.append(where)
    table = pa.concat_tables(parts).cast(schema)
    inverse = np.argsort(np.concatenate(order), kind="stable")
    return table.take(pa.array(inverse))

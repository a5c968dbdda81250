"""Merging one branch into another: fast-forward when possible, else a three-way merge on primary keys."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import changes as ch
from .changeset import FROM_FILE, FROM_POS, MOVE_ONLY, TO_FILE, TO_POS, net_between, rows_at
from .context import DatasetContext
from .errors import CommitConflictError, MergeConflictError
from .inputs import key_values
from .lineage import MERGE_PARENT, common_ancestor
from .log import LogEntry
from .txn import Prepared, group_by_file, store_change_log

Strategy = Literal["ours", "theirs"] | None


def _same_content(
    ctx: DatasetContext, table: pa.Table, left: tuple[str, str], right: tuple[str, str]
) -> np.ndarray[Any, Any]:
    """Per row of `table`: whether the (file, position) columns `left` and `right` hold the same state
    (both absent or equal rows)."""
    cols = ctx.meta.schema.names
    left_present = pc.is_valid(table.column(left[0])).to_numpy(zero_copy_only=False)
    right_present = pc.is_valid(table.column(right[0])).to_numpy(zero_copy_only=False)
    same = left_present == right_present
    present = np.nonzero(left_present & right_present)[0]
    if len(present):
        sub = table.take(pa.array(present))
        a = rows_at(ctx, sub.column(left[0]), sub.column(left[1]), cols).to_pylist()
        b = rows_at(ctx, sub.column(right[0]), sub.column(right[1]), cols).to_pylist()
        same[present] = [x == y for x, y in zip(a, b, strict=True)]
    return np.asarray(same, dtype=bool)


def prepare_merge(
    ctx: DatasetContext, target: LogEntry, source: LogEntry, source_name: str, strategy: Strategy
) -> Prepared | None:
    """The commit that brings `source`'s changes onto `target`'s branch; None when already up to date."""
    pks = ctx.meta.primary_keys
    ancestor = common_ancestor(ctx, target, source)
    if ancestor is None:
        raise CommitConflictError(
            f"dataset {ctx.name!r}: {source_name!r} and {target.branch!r} share no live snapshot (expired?); "
            "restore() the wanted version instead of merging"
        )
    if ancestor.snapshot_id == source.snapshot_id:
        return None
    # Keys compaction moved are kept: a fast-forward logs their moves, so later merges find the rows.
    theirs = net_between(ctx, ancestor, source, keep_moves=True)
    summary: dict[str, Any] = {MERGE_PARENT: source.snapshot_id, "merged_from": source_name}
    if ancestor.snapshot_id == target.snapshot_id:
        return _fast_forward(ctx, theirs, source, summary)
    # A key moved, or rewritten with its ancestor's content (an upsert of an equal row, a restore), did not
    # change.
    theirs = theirs.filter(pc.invert(pc.fill_null(theirs.column(MOVE_ONLY), False)))
    theirs = theirs.filter(pa.array(~_same_content(ctx, theirs, (FROM_FILE, FROM_POS), (TO_FILE, TO_POS))))
    # Ours keeps its moves so that keys it did not change are deleted where they are now, not at the ancestor.
    ours = net_between(ctx, ancestor, target, keep_moves=True)
    t = theirs.rename_columns([*pks, *("t" + c for c in theirs.column_names[len(pks) :])])
    o = ours.rename_columns([*pks, *("o" + c for c in ours.column_names[len(pks) :])])
    joined = t.join(o, keys=pks, join_type="left outer").combine_chunks()
    in_ours = pc.is_valid(joined.column("o" + FROM_FILE)).to_numpy(zero_copy_only=False) | pc.is_valid(
        joined.column("o" + TO_FILE)
    ).to_numpy(zero_copy_only=False)
    # Where each key lives on the target now: where ours left it (absent if ours deleted it) for every key in
    # ours' net, moves and unchanged rewrites included; else where it was at the ancestor.
    located_by_ours = in_ours.copy()
    in_ours &= ~pc.fill_null(joined.column("o" + MOVE_ONLY), False).to_numpy(zero_copy_only=False)
    same = np.zeros(joined.num_rows, dtype=bool)
    idx = np.nonzero(in_ours)[0]
    if len(idx):
        sub = joined.take(pa.array(idx))
        # Ours only moved or rewrote the row unchanged: theirs applies (at ours' location, kept in `touched`).
        in_ours[idx] = ~_same_content(ctx, sub, ("o" + FROM_FILE, "o" + FROM_POS), ("o" + TO_FILE, "o" + TO_POS))
        same[idx] = _same_content(ctx, sub, ("o" + TO_FILE, "o" + TO_POS), ("t" + TO_FILE, "t" + TO_POS))
    conflict = in_ours & ~same
    if conflict.any() and strategy is None:
        raise MergeConflictError(source_name, target.branch, key_values(joined.filter(pa.array(conflict)).select(pks)))
    apply = ~in_ours | (conflict & (strategy == "theirs"))
    todo = joined.filter(pa.array(apply))
    touched = pa.array(located_by_ours[apply])
    cur_file = pc.if_else(touched, todo.column("o" + TO_FILE), todo.column("t" + FROM_FILE))
    cur_pos = pc.if_else(touched, todo.column("o" + TO_POS), todo.column("t" + FROM_POS))
    summary["conflicts_resolved"] = int(conflict.sum())
    return _apply(
        ctx, todo.select(pks), cur_file, cur_pos, todo.column("t" + TO_FILE), todo.column("t" + TO_POS), summary
    )


def _fast_forward(ctx: DatasetContext, theirs: pa.Table, source: LogEntry, summary: dict[str, Any]) -> Prepared:
    pks = ctx.meta.primary_keys
    kinds = pc.if_else(
        pc.fill_null(theirs.column(MOVE_ONLY), False),
        ch.MOVE,
        pc.if_else(
            pc.is_null(theirs.column(FROM_FILE)),
            ch.INSERT,
            pc.if_else(pc.is_null(theirs.column(TO_FILE)), ch.DELETE, ch.UPDATE),
        ),
    )
    table = pa.Table.from_arrays(
        [*(theirs.column(k) for k in pks), kinds, *(theirs.column(c) for c in (FROM_FILE, FROM_POS, TO_FILE, TO_POS))],
        schema=ch.change_schema(ctx.key_schema),
    )
    prep = Prepared(
        operation="merge",
        replace_manifest=ctx.manifest(source),
        touched=table.select(pks),
        summary={**summary, **_counts(table), "fast_forward": True, "files_added": 0, "bytes_written": 0},
    )
    store_change_log(ctx, prep, table)
    return prep


def _counts(table: pa.Table) -> dict[str, int]:
    kinds = table.column("_change").to_pylist()
    return {
        "rows_inserted": kinds.count(ch.INSERT),
        "rows_updated": kinds.count(ch.UPDATE),
        "rows_deleted": kinds.count(ch.DELETE),
    }


def _apply(
    ctx: DatasetContext,
    keys: pa.Table,
    cur_file: Any,
    cur_pos: Any,
    new_file: Any,
    new_pos: Any,
    summary: dict[str, Any],
) -> Prepared:
    """Copy the source rows of `keys` into a new data file and delete their current rows on the target."""
    pks = ctx.meta.primary_keys
    has_cur, has_new = pc.is_valid(cur_file), pc.is_valid(new_file)
    prep = Prepared(operation="merge")
    written_file: list[str | None] = [None] * keys.num_rows
    written_pos: list[int | None] = [None] * keys.num_rows
    copy_idx = np.nonzero(has_new.to_numpy(zero_copy_only=False))[0]
    added = []
    if len(copy_idx):
        rows = rows_at(ctx, pc.take(new_file, copy_idx), pc.take(new_pos, copy_idx), ctx.meta.schema.names)
        row = ctx.write_data(rows)
        prep.written.append(row["path"])
        added.append(row)
        for n, i in enumerate(copy_idx):
            written_file[i], written_pos[i] = row["path"], n
    kinds = pc.if_else(pc.invert(has_cur), ch.INSERT, pc.if_else(has_new, ch.UPDATE, ch.DELETE))
    table = pa.Table.from_arrays(
        [
            *keys.columns,
            kinds,
            cur_file,
            cur_pos,
            pa.array(written_file, pa.string()),
            pa.array(written_pos, pa.int64()),
        ],
        schema=ch.change_schema(ctx.key_schema),
    )
    table = table.filter(pc.or_(has_cur, has_new))
    store_change_log(ctx, prep, table)
    cur = table.filter(pc.is_valid(table.column("_old_file")))
    prep.deletes = group_by_file(cur.column("_old_file"), cur.column("_old_pos"))
    prep.added = pa.Table.from_pylist(added, schema=ctx.manifest_schema)
    prep.touched = table.select(pks)
    prep.summary = {
        **summary,
        **_counts(table),
        "files_added": len(added),
        "bytes_written": sum(r["bytes"] for r in added),
    }
    return prep

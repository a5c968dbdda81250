"""compact(): rewrite small files and files with many deleted rows into target-size files.

The content is unchanged; the change log records each row's move so diff, history and concurrent writers
can follow rows to their new files. A compaction that loses a race carries the winners' deletions over to
its new files instead of starting again, so constant upserts cannot starve it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import changes as ch
from . import dv
from . import manifest as mf
from .context import DatasetContext
from .formats import DV_DIR, POS_COLUMN
from .log import LogEntry
from .scan import FILE_COLUMN, SnapshotFiles, file_batches
from .txn import Prepared, discarded_on_error, store_change_log, write_change_log


def _candidates(rows: list[dict[str, Any]], target_rows: int, max_deleted_fraction: float) -> list[dict[str, Any]]:
    small = [r for r in rows if r["rows"] - r["deleted"] < target_rows // 2]
    holey = [r for r in rows if r["deleted"] > max_deleted_fraction * r["rows"]]
    picked = {r["path"]: r for r in holey}
    if len(small) > 1:
        picked.update({r["path"]: r for r in small})
    return [r for r in rows if r["path"] in picked]


def prepare_compact(
    ctx: DatasetContext, head: LogEntry, target_rows: int | None = None, max_deleted_fraction: float = 0.2
) -> Prepared | None:
    """Rewrite the live rows of small or hole-ridden files; None when nothing is worth compacting."""
    target = target_rows or ctx.meta.options.max_rows_per_file
    manifest = ctx.manifest(head)
    picked = _candidates(manifest.to_pylist(), target, max_deleted_fraction)
    if not picked:
        return None
    snap = SnapshotFiles(ctx.store, ctx.layout, pa.Table.from_pylist(picked, schema=manifest.schema), ctx.stat_fields)
    pks = ctx.meta.primary_keys
    prep = Prepared(operation="compact", removes={r["path"] for r in picked})
    added: list[dict[str, Any]] = []
    moves: list[pa.Table] = []
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending:
            return
        chunk = pa.concat_tables(pending)
        row = ctx.write_data(chunk.select(ctx.meta.schema.names))
        prep.written.append(row["path"])
        added.append(row)
        n = chunk.num_rows
        moves.append(
            ch.build(
                chunk.select(pks),
                ch.MOVE,
                chunk.column(FILE_COLUMN),
                chunk.column(POS_COLUMN),
                pa.array([row["path"]] * n, pa.string()),
                pa.array(np.arange(n, dtype=np.int64)),
            )
        )
        pending, pending_rows = [], 0

    with discarded_on_error(ctx, prep):
        columns = [*ctx.meta.schema.names, POS_COLUMN]
        for path, batch in file_batches(snap, columns):
            t = pa.Table.from_batches([batch])
            pending.append(t.append_column(FILE_COLUMN, pa.array([path] * t.num_rows, pa.string())))
            pending_rows += t.num_rows
            if pending_rows >= target:
                flush()
        flush()
        table = write_change_log(ctx, prep, moves)
    prep.added = pa.Table.from_pylist(added, schema=ctx.manifest_schema)
    prep.summary = {
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_deleted": 0,
        "rows_rewritten": table.num_rows,
        "files_removed": len(picked),
        "files_added": len(added),
        "bytes_written": sum(r["bytes"] for r in added),
    }

    def restart(new_head: LogEntry) -> Prepared | None:
        return prepare_compact(ctx, new_head, target_rows, max_deleted_fraction)

    prep.reprepare = lambda base, new_head: _carry_deletions(ctx, prep, base, new_head, table, restart)
    return prep


def _carry_deletions(
    ctx: DatasetContext,
    prep: Prepared,
    base: LogEntry,
    head: LogEntry,
    moves: pa.Table,
    restart: Callable[[LogEntry], Prepared | None],
) -> Prepared:
    """Apply deletions that winners made in the compacted files to the rewritten rows."""
    old_rows = {r["path"]: r for r in ctx.manifest(base).to_pylist()}
    new_rows = {r["path"]: r for r in ctx.manifest(head).to_pylist()}
    if any(p not in new_rows for p in prep.removes):
        # Another compaction (or a delete of every row) took these files away: start over.
        for path in prep.written:
            ctx.store.delete(path)
        fresh = restart(head)
        return fresh if fresh is not None else Prepared(operation="compact", summary={"files_removed": 0})
    extra: dict[str, dv.Positions] = {}
    deleted = pa.array(np.zeros(moves.num_rows, dtype=bool))
    for path in prep.removes:
        before = mf.deleted_positions(ctx.store, old_rows[path])
        after = mf.deleted_positions(ctx.store, new_rows[path])
        gone = np.setdiff1d(after, before)
        if len(gone) == 0:
            continue
        mask = pc.and_(pc.equal(moves.column("_old_file"), path), pc.is_in(moves.column("_old_pos"), pa.array(gone)))
        deleted = pc.or_(deleted, mask)
        hit = moves.filter(mask)
        for new_path, pos in zip(hit.column("_new_file").to_pylist(), hit.column("_new_pos").to_pylist(), strict=True):
            extra.setdefault(new_path, np.empty(0, np.int64))
            extra[new_path] = np.append(extra[new_path], pos)
    if not extra:
        return prep
    rows = prep.added.to_pylist() if prep.added is not None else []
    for row in rows:
        if row["path"] in extra:
            merged = dv.union(mf.deleted_positions(ctx.store, row), np.unique(extra[row["path"]]))
            data = dv.encode(merged)
            dv_path = f"{DV_DIR}/{uuid.uuid4().hex}.dv"
            ctx.store.write_bytes(dv_path, data)
            prep.written.append(dv_path)
            if row["dv"] in prep.written:  # an earlier carry's vector, superseded by this one
                ctx.store.delete(row["dv"])
                prep.written.remove(row["dv"])
            row.update(dv=dv_path, dv_bytes=len(data), deleted=len(merged))
    carried = replace(prep, added=pa.Table.from_pylist(rows, schema=ctx.manifest_schema))
    # Rows a winner deleted or replaced did not move: a change log saying they did would make diff(), merge
    # and history() see their old content at the new place again.
    moved = moves.filter(pc.invert(deleted))
    if prep.changes is not None:  # stored by a lost attempt, or still pending
        ctx.store.delete(prep.changes)
        prep.pending.pop(prep.changes, None)
        prep.written.remove(prep.changes)
    store_change_log(ctx, carried, moved)
    carried.summary = {**prep.summary, "rows_rewritten": moved.num_rows}
    # Later rebases must start from the deletions carried so far.
    carried.reprepare = lambda b, h: _carry_deletions(ctx, carried, b, h, moved, restart)
    return carried

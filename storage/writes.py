"""Preparing writes: data files, deletion positions and the change log, before any commit entry exists."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import changes as ch
from . import dv, faults
from .changes import change_counts
from .context import DatasetContext
from .dv import Positions
from .errors import InvalidInputError, PrimaryKeyConflictError
from .formats import DATA_DIR, POS_COLUMN
from .inputs import conform, duplicate_keys, iter_tables, key_table, key_values, rechunk
from .log import LogEntry
from .scan import FILE_COLUMN, locate, locations
from .txn import Prepared, discarded_on_error, group_by_file, write_change_log


def group_positions(hits: pa.Table) -> dict[str, Positions]:
    """Row positions per data file of a locations table."""
    return group_by_file(hits.column(FILE_COLUMN), hits.column(POS_COLUMN))


def _conformed(ctx: DatasetContext, data: Any) -> Iterator[pa.Table]:
    for table in iter_tables(data):
        yield conform(table, ctx.meta.schema, ctx.meta.primary_keys)


def _refuse_duplicates(ctx: DatasetContext, keys: pa.Table) -> None:
    dups = duplicate_keys(keys)
    if dups:
        raise InvalidInputError(
            f"dataset {ctx.name!r}: {len(dups)} primary key(s) occur more than once in the input: {dups[:10]}; "
            "keep one row per key"
        )


def _nulls(n: int, typ: pa.DataType) -> pa.Array:
    return pa.nulls(n, typ)


def _row_changes(keys: pa.Table, hits: pa.Table, new_file: str) -> pa.Table:
    names = keys.column_names
    with_pos = keys.append_column("_new_pos", pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    joined = with_pos.join(hits, keys=names, join_type="left outer")
    is_update = pc.is_valid(joined.column(FILE_COLUMN))
    parts = []
    for kind, mask in ((ch.UPDATE, is_update), (ch.INSERT, pc.invert(is_update))):
        part = joined.filter(mask)
        n = part.num_rows
        parts.append(
            ch.build(
                part.select(names),
                kind,
                part.column(FILE_COLUMN) if kind == ch.UPDATE else _nulls(n, pa.string()),
                part.column(POS_COLUMN) if kind == ch.UPDATE else _nulls(n, pa.int64()),
                pa.array([new_file] * n, pa.string()),
                part.column("_new_pos"),
            )
        )
    return pa.concat_tables(parts)


def _delete_changes(ctx: DatasetContext, hits: pa.Table) -> pa.Table:
    n = hits.num_rows
    return ch.build(
        hits.select(ctx.meta.primary_keys),
        ch.DELETE,
        hits.column(FILE_COLUMN),
        hits.column(POS_COLUMN),
        _nulls(n, pa.string()),
        _nulls(n, pa.int64()),
    )


def _minus(keys: pa.Table, seen: list[pa.Table]) -> pa.Table:
    """Rows of `keys` not among the `seen` key tables."""
    if not seen or keys.num_rows == 0:
        return keys
    names = keys.column_names
    marked = pa.concat_tables(seen).append_column("_lh_seen", pa.array(np.ones(sum(t.num_rows for t in seen), bool)))
    joined = keys.join(marked, keys=names, join_type="left outer")
    return joined.filter(pc.is_null(joined.column("_lh_seen"))).select(names)


def _pieces(
    ctx: DatasetContext, data: Any, staged: list[dict[str, Any]] | None
) -> Iterator[tuple[pa.Table, pa.Table | None, dict[str, Any]]]:
    """(keys, rows to write, None) per input chunk, or (keys, None, manifest row) per staged data file."""
    pks = ctx.meta.primary_keys
    if staged is None:
        for chunk in rechunk(
            _conformed(ctx, data), ctx.meta.options.max_rows_per_file, ctx.meta.options.max_bytes_per_file
        ):
            yield chunk.select(pks), chunk, {}
        return
    fs, root = ctx.store.arrow_fs()
    for row in staged:
        path = str(row.get("path", ""))
        if not path.startswith(f"{DATA_DIR}/") or not ctx.store.exists(path):
            raise InvalidInputError(
                f"staged file {path!r} is not a data file of dataset {ctx.name!r}; write it with ds.write_files()"
            )
        keys = pq.read_table(f"{root}/{path}", columns=pks, filesystem=fs)
        yield conform(keys, ctx.key_schema, pks), None, row


def prepare_rows(
    ctx: DatasetContext,
    base: LogEntry,
    data: Any,
    mode: str,
    delete_keys: Any = None,
    staged: list[dict[str, Any]] | None = None,
) -> Prepared:
    """Write the data files of an append, insert or upsert and describe the commit.

    With `delete_keys` (mode "apply"), the same commit also deletes those keys (keys also upserted win).
    With `staged` (files from write_files(), e.g. written by Ray workers), nothing is written but the log.
    """
    snap = ctx.files(base)
    pks = ctx.meta.primary_keys
    prep = Prepared(operation=mode)
    seen: list[pa.Table] = []
    added: list[dict[str, Any]] = []
    change_parts: list[pa.Table] = []
    deletes: dict[str, list[Positions]] = defaultdict(list)
    conflicts: list[Any] = []
    with discarded_on_error(ctx, prep):
        for keys, chunk, staged_row in _pieces(ctx, data, staged):
            _refuse_duplicates(ctx, keys)
            hits = locate(snap, keys)
            if mode in ("append", "insert") and (hits.num_rows or conflicts):
                # Keep reading (without writing) so the error names every existing key, not one chunk's.
                conflicts += key_values(hits.select(pks))
                continue
            if chunk is not None:
                row = ctx.write_data(chunk)
                prep.written.append(row["path"])
                faults.checkpoint("write.after_data_file")
            else:
                row = staged_row
            added.append(row)
            seen.append(keys)
            change_parts.append(_row_changes(keys, hits, row["path"]))
            for path, pos in group_positions(hits).items():
                deletes[path].append(pos)
        if conflicts:
            raise PrimaryKeyConflictError(ctx.name, conflicts)
        if len(seen) > 1:  # each chunk was checked alone; keys may still repeat across chunks
            _refuse_duplicates(ctx, pa.concat_tables(seen))
        if delete_keys is not None:
            gone = locate(snap, _minus(key_table(delete_keys, ctx.meta.schema, pks), seen))
            change_parts.append(_delete_changes(ctx, gone))
            seen.append(gone.select(pks))
            for path, pos in group_positions(gone).items():
                deletes[path].append(pos)
        table = write_change_log(ctx, prep, change_parts)
    kinds = change_counts(table)
    prep.added = pa.Table.from_pylist(added, schema=ctx.manifest_schema)
    prep.deletes = {p: dv.unique_sorted(np.concatenate(v)) for p, v in deletes.items()}
    prep.touched = pa.concat_tables(seen) if seen else ctx.key_schema.empty_table()
    prep.summary = {
        "rows_inserted": kinds[ch.INSERT],
        "rows_updated": kinds[ch.UPDATE],
        "rows_deleted": kinds[ch.DELETE],
        "files_added": len(added),
        "bytes_written": sum(r["bytes"] for r in added),
    }
    return prep


def prepare_delete(ctx: DatasetContext, base: LogEntry, filter: pc.Expression | None, keys: Any) -> Prepared:
    """Find the rows a delete removes and write its change log (data files are not touched)."""
    snap = ctx.files(base)
    pks = ctx.meta.primary_keys
    if (filter is None) == (keys is None):
        raise InvalidInputError(
            "delete needs exactly one of filter= (a pyarrow expression; pc.scalar(True) deletes every row) "
            "or keys= (primary key values)"
        )
    if keys is not None:
        hits = locate(snap, key_table(keys, ctx.meta.schema, pks))
    else:
        hits = locations(snap, pks, filter)
    n = hits.num_rows
    path = ch.write(ctx.store, _delete_changes(ctx, hits))
    return Prepared(
        operation="delete",
        deletes=group_positions(hits),
        changes=path,
        written=[path],
        touched=hits.select(pks),
        summary={
            "rows_inserted": 0,
            "rows_updated": 0,
            "rows_deleted": n,
            "files_added": 0,
            "bytes_written": 0,
        },
    )


def prepare_restore(ctx: DatasetContext, head: LogEntry, target: LogEntry) -> Prepared:
    """A commit whose content is `target`'s, with the change log from `head` to it."""
    pks = ctx.meta.primary_keys
    old = locations(ctx.files(head), pks).rename_columns([*pks, "_old_pos", "_old_file"])
    new = locations(ctx.files(target), pks).rename_columns([*pks, "_new_pos", "_new_file"])
    joined = old.join(new, keys=pks, join_type="full outer")
    has_old, has_new = pc.is_valid(joined.column("_old_file")), pc.is_valid(joined.column("_new_file"))
    moved = pc.or_(
        pc.not_equal(joined.column("_old_file"), joined.column("_new_file")),
        pc.not_equal(joined.column("_old_pos"), joined.column("_new_pos")),
    )
    kinds = [
        (ch.INSERT, pc.invert(has_old)),
        (ch.DELETE, pc.invert(has_new)),
        (ch.UPDATE, pc.and_(pc.and_(has_old, has_new), moved)),
    ]
    parts = []
    for kind, mask in kinds:
        part = joined.filter(mask)
        cols = [part.column(c) for c in ("_old_file", "_old_pos", "_new_file", "_new_pos")]
        parts.append(ch.build(part.select(pks), kind, *cols))
    table = pa.concat_tables(parts)
    path = ch.write(ctx.store, table)
    counts = change_counts(table)
    return Prepared(
        operation="restore",
        replace_manifest=ctx.manifest(target),
        changes=path,
        written=[path],
        touched=table.select(pks),
        summary={
            "rows_inserted": counts[ch.INSERT],
            "rows_updated": counts[ch.UPDATE],
            "rows_deleted": counts[ch.DELETE],
            "files_added": 0,
            "bytes_written": 0,
            "restored_from": target.snapshot_id,
        },
        reprepare=lambda _base, new_head: _again(ctx, path, lambda: prepare_restore(ctx, new_head, target)),
    )


def _again(ctx: DatasetContext, stale: str, prepare: Callable[[], Prepared]) -> Prepared:
    """Discard a stale change log and prepare the operation again against a new head."""
    ctx.store.delete(stale)
    return prepare()


def write_files(ctx: DatasetContext, data: Any) -> list[dict[str, Any]]:
    """Write data files for `data` without committing them; returns their manifest rows."""
    rows = []
    for chunk in rechunk(
        _conformed(ctx, data), ctx.meta.options.max_rows_per_file, ctx.meta.options.max_bytes_per_file
    ):
        _refuse_duplicates(ctx, chunk.select(ctx.meta.primary_keys))
        rows.append(ctx.write_data(chunk))
    return rows

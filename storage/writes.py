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
from . import dv, faults, keyindex
from .changes import change_counts
from .context import DatasetContext
from .dv import Positions
from .errors import InvalidInputError, PrimaryKeyConflictError
from .formats import DATA_DIR, POS_COLUMN
from .inputs import conform, duplicate_keys, iter_tables, key_table, key_values, rechunk
from .log import LogEntry
from .row_images import with_row_images
from .scan import FILE_COLUMN, SnapshotFiles, locations
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


def _with_hits(rows: pa.Table, hits: pa.Table, names: list[str]) -> pa.Table:
    """`rows` (distinct keys) with the location of their key among `hits`, null where none: a left outer join."""
    if len(names) == 1:
        at = pc.index_in(rows.column(names[0]), value_set=hits.column(names[0]).combine_chunks())
        if rows.num_rows - at.null_count == hits.num_rows:  # no key lives twice (else the join lists both)
            found = hits.select([FILE_COLUMN, POS_COLUMN]).take(at)
            return pa.Table.from_arrays([*rows.columns, *found.columns], [*rows.column_names, *found.column_names])
    return rows.join(hits, keys=names, join_type="left outer")


def _row_changes(keys: pa.Table, hits: pa.Table, new_file: str) -> pa.Table:
    names = keys.column_names
    with_pos = keys.append_column("_new_pos", pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    joined = _with_hits(with_pos, hits, names)
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


def _among(rows: pa.Table, keys: pa.Table, names: list[str], keep: bool) -> pa.Table:
    """Rows of `rows` whose `names` columns are (keep) or are not (not keep) among the rows of `keys`."""
    if len(names) > 1:
        return rows.join(keys.select(names), keys=names, join_type="left semi" if keep else "left anti")
    # One key column: a hash set lookup, without the start-up cost of a join.
    hit = pc.is_in(rows.column(names[0]), value_set=keys.column(names[0]).combine_chunks())
    return rows.filter(hit if keep else pc.invert(hit))


def _minus(keys: pa.Table, seen: list[pa.Table], names: list[str]) -> pa.Table:
    """Rows of `keys` whose `names` columns are not among the `seen` key tables."""
    if not seen or keys.num_rows == 0:
        return keys
    return _among(keys, pa.concat_tables(seen), names, keep=False)


def _locate_among(snap: SnapshotFiles, keys: pa.Table, deleting: pa.Table | None, found: pa.Table | None) -> pa.Table:
    """Where `keys` live; keys among `deleting` (already located as `found`) need no second scan."""
    if deleting is None or found is None:
        return keyindex.locate(snap, keys)
    names = keys.column_names
    rest = _among(keys, deleting, names, keep=False)
    hits = _among(found, keys, names, keep=True)
    return pa.concat_tables([hits, keyindex.locate(snap, rest)]) if rest.num_rows else hits


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
    # Delete keys are located once, up front: a view refresh upserts keys among them, and one scan serves both.
    deleting = None if delete_keys is None else key_table(delete_keys, ctx.meta.schema, pks)
    found = None if deleting is None else keyindex.locate(snap, deleting)
    with discarded_on_error(ctx, prep):
        for keys, chunk, staged_row in _pieces(ctx, data, staged):
            _refuse_duplicates(ctx, keys)
            hits = _locate_among(snap, keys, deleting, found)
            if mode in ("append", "insert") and (hits.num_rows or conflicts):
                # Keep reading (without writing) so the error names every existing key, not one chunk's.
                conflicts += key_values(hits.select(pks))
                continue
            if chunk is not None:
                row = ctx.write_data(chunk)
                prep.written.append(row["path"])
                keyindex.remember(ctx.store.uri, row["path"], keys)
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
        if found is not None:
            gone = _minus(found, seen, pks)
            change_parts.append(_delete_changes(ctx, gone))
            seen.append(gone.select(pks))
            for path, pos in group_positions(gone).items():
                deletes[path].append(pos)
        table = write_change_log(ctx, prep, change_parts)
    kinds = change_counts(table)
    prep.added = pa.Table.from_pylist(added, schema=ctx.manifest_schema)
    prep.deletes = {p: dv.unique_sorted(np.concatenate(v)) for p, v in deletes.items()}
    prep.touched = pa.concat_tables(seen, promote_options="permissive") if seen else ctx.key_schema.empty_table()
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
        hits = keyindex.locate(snap, key_table(keys, ctx.meta.schema, pks))
    else:
        hits = locations(snap, pks, filter)
    n = hits.num_rows
    path = ch.write(ctx.store, with_row_images(ctx, _delete_changes(ctx, hits)))
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


def transition(pks: list[str], old: pa.Table, new: pa.Table, relocated_only: bool = True) -> pa.Table:
    """The change log from one content to another, comparing where keys live (no row is read).

    `old` and `new` hold keys with `_old_file`/`_old_pos` and `_new_file`/`_new_pos`. A key in both is an
    update when its row moved (always, with `relocated_only=False`): readers such as diff() compare contents.
    """
    pairs = _pair_rows(pks, old, new)
    cols = {c: old.column(c).take(pairs.column("_lh_o")) for c in ("_old_file", "_old_pos")}
    cols |= {c: new.column(c).take(pairs.column("_lh_n")) for c in ("_new_file", "_new_pos")}
    joined = pa.Table.from_arrays([*pairs.select(pks).columns, *cols.values()], names=[*pks, *cols])
    has_old, has_new = pc.is_valid(joined.column("_old_file")), pc.is_valid(joined.column("_new_file"))
    both = pc.and_(has_old, has_new)
    if relocated_only:
        moved = pc.or_(
            pc.not_equal(joined.column("_old_file"), joined.column("_new_file")),
            pc.not_equal(joined.column("_old_pos"), joined.column("_new_pos")),
        )
        both = pc.and_(both, moved)
    parts = []
    for kind, mask in ((ch.INSERT, pc.invert(has_old)), (ch.DELETE, pc.invert(has_new)), (ch.UPDATE, both)):
        part = joined.filter(mask)
        parts.append(ch.build(part.select(pks), kind, *(part.column(c) for c in cols)))
    return pa.concat_tables(parts)


def _pair_rows(pks: list[str], old: pa.Table, new: pa.Table) -> pa.Table:
    """Keys of `old` and `new` (each unique) with their row numbers `_lh_o` and `_lh_n` (null = absent there)."""
    key = old.schema.field(pks[0]).type if len(pks) == 1 else None
    if key is None or not pa.types.is_integer(key) or old.column(0).null_count or new.column(0).null_count:
        # Join keys and row numbers only: carrying file paths through a million-row join costs several times more.
        pairs = old.select(pks).append_column("_lh_o", pa.array(np.arange(old.num_rows, dtype=np.int64)))
        return pairs.join(
            new.select(pks).append_column("_lh_n", pa.array(np.arange(new.num_rows, dtype=np.int64))),
            keys=pks,
            join_type="full outer",
        )
    # One integer key: sorting and a binary search pair the rows several times faster than a hash join.
    a = old.column(0).to_numpy(zero_copy_only=False)
    b = new.column(0).to_numpy(zero_copy_only=False)
    order = np.argsort(a, kind="stable")
    at = np.minimum(np.searchsorted(a[order], b), max(len(a) - 1, 0))
    found = (a[order][at] == b) if len(a) else np.zeros(len(b), dtype=bool)
    in_new = np.zeros(len(a), dtype=bool)
    in_new[order[at[found]]] = True
    gone = np.nonzero(~in_new)[0]
    o = np.concatenate([np.where(found, order[at] if len(a) else 0, -1), gone])
    n = np.concatenate([np.arange(len(b)), np.full(len(gone), -1)])
    keys = pa.concat_arrays([new.column(0).combine_chunks(), old.column(0).combine_chunks().take(pa.array(gone))])
    return pa.table({pks[0]: keys, "_lh_o": pa.array(o, mask=o < 0), "_lh_n": pa.array(n, mask=n < 0)})


def _old_locations(ctx: DatasetContext, entry: LogEntry) -> pa.Table:
    pks = ctx.meta.primary_keys
    return locations(ctx.files(entry), pks).rename_columns([*pks, "_old_pos", "_old_file"])


def _counts(table: pa.Table) -> dict[str, int]:
    counts = change_counts(table)
    return {"rows_inserted": counts[ch.INSERT], "rows_updated": counts[ch.UPDATE], "rows_deleted": counts[ch.DELETE]}


def prepare_restore(ctx: DatasetContext, head: LogEntry, target: LogEntry) -> Prepared:
    """A commit whose content is `target`'s, with the change log from `head` to it."""
    pks = ctx.meta.primary_keys
    new = locations(ctx.files(target), pks).rename_columns([*pks, "_new_pos", "_new_file"])
    table = transition(pks, _old_locations(ctx, head), new)
    path = ch.write(ctx.store, with_row_images(ctx, table))
    return Prepared(
        operation="restore",
        replace_manifest=ctx.manifest(target),
        changes=path,
        written=[path],
        touched=table.select(pks),
        summary={**_counts(table), "files_added": 0, "bytes_written": 0, "restored_from": target.snapshot_id},
        reprepare=lambda _base, new_head: _again(ctx, path, lambda: prepare_restore(ctx, new_head, target)),
    )


def prepare_replace(ctx: DatasetContext, base: LogEntry, data: Any) -> Prepared:
    """Write `data` as the dataset's whole new content: new files replace every file of the head.

    The change log compares keys only: a key in both contents is an update (diff() drops unchanged rows).
    Replacing does not depend on what the head holds, so after a concurrent commit only the log is redone.
    """
    pks = ctx.meta.primary_keys
    prep = Prepared(operation="replace")
    added: list[dict[str, Any]] = []
    placed: list[pa.Table] = []
    with discarded_on_error(ctx, prep):
        options = ctx.meta.options
        for chunk in rechunk(_conformed(ctx, data), options.max_rows_per_file, options.max_bytes_per_file):
            row = ctx.write_data(chunk)
            prep.written.append(row["path"])
            keyindex.remember(ctx.store.uri, row["path"], chunk.select(pks))
            faults.checkpoint("write.after_data_file")
            added.append(row)
            n = chunk.num_rows
            placed.append(
                chunk.select(pks)
                .append_column("_new_file", pa.repeat(pa.scalar(row["path"]), n))
                .append_column("_new_pos", pa.array(np.arange(n, dtype=np.int64)))
            )
        new_schema = pa.schema([*ctx.key_schema, pa.field("_new_file", pa.string()), pa.field("_new_pos", pa.int64())])
        new = pa.concat_tables(placed) if placed else new_schema.empty_table()
        _refuse_duplicates(ctx, new.select(pks))  # once for all chunks: nothing is committed before this
        prep.replace_manifest = pa.Table.from_pylist(added, schema=ctx.manifest_schema)
        _log_replace(ctx, prep, base, new)
    files = {"files_added": len(added), "bytes_written": sum(r["bytes"] for r in added)}

    def again(_base: LogEntry, head: LogEntry) -> Prepared:
        stale = str(prep.changes)
        prep.written.remove(stale)
        if prep.pending.pop(stale, None) is None:  # stored by an earlier attempt that lost the race
            ctx.store.delete(stale)
        with discarded_on_error(ctx, prep):
            _log_replace(ctx, prep, head, new)
        prep.summary.update(files)
        return prep

    prep.reprepare = again
    prep.summary.update(files)
    return prep


def _log_replace(ctx: DatasetContext, prep: Prepared, head: LogEntry, new: pa.Table) -> None:
    """The change log of replacing `head`'s content by the rows at `new`'s locations."""
    pks = ctx.meta.primary_keys
    table = write_change_log(ctx, prep, [transition(pks, _old_locations(ctx, head), new, relocated_only=False)])
    prep.touched = table.select(pks)
    prep.summary = {**_counts(table), "files_removed": ctx.manifest(head).num_rows}


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

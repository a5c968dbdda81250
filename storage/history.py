"""diff() between versions and history() of one key, both in time proportional to the changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import changes as ch
from .changeset import (
    FROM_FILE,
    FROM_POS,
    FROM_REF,
    TO_FILE,
    TO_POS,
    TO_REF,
    net_images,
    rows_at,
    rows_known,
)
from .context import DatasetContext
from .formats import encode_json
from .inputs import key_table
from .log import LogEntry

CHANGE_TYPE = "_change_type"
INSERT, DELETE, PRE, POST = "insert", "delete", "update_preimage", "update_postimage"


def diff_schema(ctx: DatasetContext, columns: list[str]) -> pa.Schema:
    """Row columns plus `_change_type`."""
    return pa.schema([*(ctx.meta.schema.field(c) for c in columns), pa.field(CHANGE_TYPE, pa.string())])


def _tagged(rows: pa.Table, kind: str) -> pa.Table:
    n, value = rows.num_rows, kind.encode()
    offsets = pa.py_buffer(np.arange(0, (n + 1) * len(value), len(value), dtype=np.int32))
    return rows.append_column(CHANGE_TYPE, pa.StringArray.from_buffers(n, offsets, pa.py_buffer(value * n)))


_START, _END = (FROM_FILE, FROM_POS, FROM_REF), (TO_FILE, TO_POS, TO_REF)


def _state(
    ctx: DatasetContext, net: pa.Table, side: tuple[str, str, str], pool: pa.Array, columns: list[str]
) -> pa.Table:
    """Rows of `net`'s keys at one end of the diff: from the row-image pool when logged, else their files."""
    file, pos, ref = side
    return rows_known(ctx, net.column(file), net.column(pos), net.column(ref), pool, columns)


def iter_diff(
    ctx: DatasetContext, start: LogEntry, end: LogEntry, columns: list[str], batch_size: int = 65_536
) -> Iterator[pa.Table]:
    """The net change from `start` to `end`, in tables of at most `batch_size` changed keys.

    Each table lists inserts, deletes, then the updated keys' pre-images and their post-images in the same
    key order (pairing them row by row would copy every updated row once more).
    """
    net, pool = net_images(ctx, start, end)
    schema = diff_schema(ctx, columns)
    # Keys are equal on both sides of an update by construction: only the other columns can differ.
    compared = [c for c in columns if c not in ctx.meta.primary_keys]
    for offset in range(0, net.num_rows, batch_size):
        part = net.slice(offset, batch_size)
        has_from = pc.is_valid(part.column(FROM_FILE)).to_numpy(zero_copy_only=False)
        has_to = pc.is_valid(part.column(TO_FILE)).to_numpy(zero_copy_only=False)
        both = has_from & has_to
        updated = part if both.all() else part.take(np.flatnonzero(both))
        pre, post = _state(ctx, updated, _START, pool, columns), _state(ctx, updated, _END, pool, columns)
        # An update that rewrote a row with identical content is no change.
        changed = rows_differ(pre.select(compared), post.select(compared))
        if changed.false_count:
            pre, post = pre.filter(changed), post.filter(changed)
        out = [
            _tagged(_state(ctx, part.take(np.flatnonzero(has_to & ~has_from)), _END, pool, columns), INSERT),
            _tagged(_state(ctx, part.take(np.flatnonzero(has_from & ~has_to)), _START, pool, columns), DELETE),
            _tagged(pre, PRE),
            _tagged(post, POST),
        ]
        table = pa.concat_tables(out).cast(schema)
        if table.num_rows:
            yield table


def rows_differ(a: pa.Table, b: pa.Table) -> pa.Array:
    """Per row pair: whether any column differs (nulls equal nulls); vectorized where Arrow can compare."""
    differ = np.zeros(a.num_rows, dtype=bool)
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        try:
            eq = pc.equal(x, y)
            if x.null_count or y.null_count:
                eq = pc.or_(pc.fill_null(eq, False), pc.and_(pc.is_null(x), pc.is_null(y)))
            same = eq.to_numpy(zero_copy_only=False)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # nested types
            same = np.array([u == v for u, v in zip(x.to_pylist(), y.to_pylist(), strict=True)], dtype=bool)
        differ |= ~same
    return pa.array(differ)


def history(ctx: DatasetContext, head: LogEntry, key: Any, columns: list[str]) -> pa.Table:
    """Every state of one row along `head`'s first-parent history, newest first."""
    pks = ctx.meta.primary_keys
    wanted = key_table([key], ctx.meta.schema, pks)
    meta_fields = [
        pa.field("_snapshot_id", pa.int64()),
        pa.field("_committed_at", pa.timestamp("us", tz="UTC")),
        pa.field(CHANGE_TYPE, pa.string()),
        pa.field("_message", pa.string()),
        pa.field("_properties", pa.string()),
    ]
    schema = pa.schema([*meta_fields, *(ctx.meta.schema.field(c) for c in columns)])
    meta_rows: list[dict[str, Any]] = []
    files: list[str] = []
    positions: list[int] = []
    for entry in ctx.log.chain(head):
        if not entry.changes:
            continue
        changes = ch.read(ctx.store, entry.changes)
        hit = changes.filter(_all([pc.equal(changes.column(k), wanted.column(k)[0]) for k in pks]))
        if hit.num_rows == 0 or hit.column("_change")[0].as_py() == ch.MOVE:
            continue
        kind = hit.column("_change")[0].as_py()
        where = "_old" if kind == ch.DELETE else "_new"
        files.append(hit.column(f"{where}_file")[0].as_py())
        positions.append(hit.column(f"{where}_pos")[0].as_py())
        meta_rows.append(
            {
                "_snapshot_id": entry.snapshot_id,
                "_committed_at": entry.created_at,
                CHANGE_TYPE: kind,
                "_message": entry.message,
                "_properties": encode_json(entry.properties).decode(),
            }
        )
    if not meta_rows:
        return schema.empty_table()
    rows = rows_at(ctx, pa.array(files, pa.string()), pa.array(positions, pa.int64()), columns)
    meta = pa.Table.from_pylist(meta_rows, schema=pa.schema(meta_fields))
    return pa.Table.from_arrays([*meta.columns, *rows.columns], schema=schema)


def _all(masks: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """Element-wise AND of boolean columns."""
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_(out, m)
    return out

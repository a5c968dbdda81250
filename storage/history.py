"""diff() between versions and history() of one key, both in time proportional to the changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import bits
from . import changes as ch
from .beside import beside
from .changeset import (
    FROM_FILE,
    FROM_POS,
    FROM_REF,
    TO_FILE,
    TO_POS,
    TO_REF,
    Pool,
    net_images,
    pool_type,
    rows_known,
)
from .compare import rows_differ
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


def _state(ctx: DatasetContext, net: pa.Table, side: tuple[str, str, str], pool: Pool, columns: list[str]) -> pa.Table:
    """Rows of `net`'s keys at one end of the diff: from the row-image pool when logged, else their files."""
    file, pos, ref = side
    return rows_known(ctx, net.column(file), net.column(pos), net.column(ref), pool, columns)


def iter_diff(
    ctx: DatasetContext, start: LogEntry, end: LogEntry, columns: list[str], batch_size: int | None = 65_536
) -> Iterator[pa.Table]:
    """The net change from `start` to `end`, in tables of at most `batch_size` changed keys (None: one).

    Each table lists inserts, deletes, then the updated keys' pre-images and their post-images in the same
    key order (pairing them row by row would copy every updated row once more).
    """
    # In batches, a row-image pool of more rows than a few batches stays in the logs' chunks: joined, it would
    # hold every image of the range.
    net, pool = net_images(ctx, start, end, join_up_to=None if batch_size is None else 4 * batch_size)
    schema = diff_schema(ctx, columns)
    # Keys are equal on both sides of an update by construction: only the other columns can differ.
    compared = [c for c in columns if c not in ctx.meta.primary_keys]
    step = batch_size or max(net.num_rows, 1)
    for offset in range(0, net.num_rows, step):
        table = _diff_part(ctx, net.slice(offset, step), pool, columns, compared, schema)
        if table.num_rows:
            yield table


def _diff_part(
    ctx: DatasetContext,
    part: pa.Table,
    pool: Pool,
    columns: list[str],
    compared: list[str],
    schema: pa.Schema,
) -> pa.Table:
    """iter_diff() of one batch of the net change; the pre-images are made on the helper thread."""
    has_from, has_to = bits.valid(part.column(FROM_FILE)), bits.valid(part.column(TO_FILE))
    both = has_from & has_to
    updated = part if both.all() else part.take(np.flatnonzero(both))
    before = beside(_state, ctx, updated, _START, pool, columns)
    post = _state(ctx, updated, _END, pool, columns)
    pre = before.result()
    # An update that rewrote a row with identical content is no change.
    changed = rows_differ(pre.select(compared), post.select(compared))
    if changed.false_count:
        pre, post = pre.filter(changed), post.filter(changed)
    out = [_tagged(pre, PRE), _tagged(post, POST)]
    for rows, side, kind in ((has_to & ~has_from, _END, INSERT), (has_from & ~has_to, _START, DELETE)):
        if rows.any():
            out.insert(-2, _tagged(_state(ctx, part.take(np.flatnonzero(rows)), side, pool, columns), kind))
    return pa.concat_tables(out).cast(schema)


@dataclass(frozen=True)
class Hit:
    """A commit that changed the key: its log entry and the key's row of its change log (ch.row_at())."""

    entry: LogEntry
    row: pa.Table

    def get(self, name: str) -> Any:
        """One change column of the row (`_change`, `_old_file`, `_old_pos`, ...)."""
        return self.row.column(name)[0].as_py()


def history(ctx: DatasetContext, head: LogEntry, key: Any, columns: list[str]) -> pa.Table:
    """Every state of one row along `head`'s first-parent history, newest first.

    Each commit's change log says whether it touched the key; the key's row at that commit comes from the
    log's row image when it recorded one, else from the data file that held it.
    """
    wanted = key_table([key], ctx.meta.schema, ctx.meta.primary_keys)
    meta_fields = [
        pa.field("_snapshot_id", pa.int64()),
        pa.field("_committed_at", pa.timestamp("us", tz="UTC")),
        pa.field(CHANGE_TYPE, pa.string()),
        pa.field("_message", pa.string()),
        pa.field("_properties", pa.string()),
    ]
    schema = pa.schema([*meta_fields, *(ctx.meta.schema.field(c) for c in columns)])
    hits: list[Hit] = []
    width = len(ctx.meta.primary_keys)  # a change log's first columns are the key
    for entry in ctx.log.chain(head):
        if not entry.changes:
            continue
        row = _key_row(ch.read_keys(ctx.store, entry.changes, width), wanted)
        if row < 0:
            continue
        hit = Hit(entry, ch.row_at(ctx.store, entry.changes, width, row))
        if hit.get("_change") != ch.MOVE:
            hits.append(hit)
    if not hits:
        return schema.empty_table()
    rows = _states(ctx, hits, columns)
    meta = [
        pa.array([h.entry.snapshot_id for h in hits], pa.int64()),
        pa.array([h.entry.created_at for h in hits], meta_fields[1].type),
        pa.array([h.get("_change") for h in hits], pa.string()),
        pa.array([h.entry.message for h in hits], pa.string()),
        pa.array([encode_json(h.entry.properties).decode() for h in hits], pa.string()),
    ]
    return pa.Table.from_arrays([*meta, *rows.columns], schema=schema)


def _key_row(log: pa.Table, wanted: pa.Table) -> int:
    """The first row of a change log about the one key in `wanted`, or -1."""
    names = wanted.column_names
    if len(names) == 1:  # the common case: one search, no mask
        return int(pc.index(log.column(names[0]), wanted.column(names[0])[0]).as_py())
    mask = pc.equal(log.column(names[0]), wanted.column(names[0])[0])
    for name in names[1:]:
        mask = pc.and_(mask, pc.equal(log.column(name), wanted.column(name)[0]))
    return int(pc.index(mask, True).as_py())


def _states(ctx: DatasetContext, hits: list[Hit], columns: list[str]) -> pa.Table:
    """The key's row at each hit (newest first): a delete shows the row as it was, other changes the row they
    wrote. It comes from the hit's own row image, else from the next change's image of the row it replaced
    (the same stored row: a bulk load logs no new rows, the update after it logs the old one), else from
    the data file."""
    image_type = pool_type(ctx)
    files: list[str] = []
    positions: list[int] = []
    refs: list[int | None] = []  # index into `images`, None: read the row from its data file
    images: list[pa.Array] = []
    for i, hit in enumerate(hits):
        deleted = hit.get("_change") == ch.DELETE
        where, name = ("_old", ch.PRE) if deleted else ("_new", ch.POST)
        file, pos = hit.get(f"{where}_file"), hit.get(f"{where}_pos")
        image = ch.image_of(hit.row, name)
        if image is None and not deleted and i > 0:
            newer = hits[i - 1]
            if (newer.get("_old_file"), newer.get("_old_pos")) == (file, pos):
                # the very row this hit wrote, not moved by a compaction since
                image = ch.image_of(newer.row, ch.PRE)
        files.append(file)
        positions.append(pos)
        refs.append(len(images) if image is not None else None)
        if image is not None:
            images.append(image if image.type.equals(image_type) else image.cast(image_type))
    pool = pa.concat_arrays(images) if images else pa.array([], image_type)
    return rows_known(
        ctx, pa.array(files, pa.string()), pa.array(positions, pa.int64()), pa.array(refs, pa.int64()), pool, columns
    )

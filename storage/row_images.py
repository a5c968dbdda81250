"""Row images in the change log: the stored rows before and after each change, copied at commit time.

With `WriteOptions.log_row_images`, diff() takes rows from the change logs (O(changes)) instead of reading
the files that hold them: for old rows of keys spread over a table that read costs a scan, and for the
new rows of many small commits it costs a file open each. The commit pays for the old rows once instead,
as Delta's change data feed does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import changes as ch
from .changeset import pool_type, stored_rows_at
from .context import DatasetContext

# New rows of larger commits (bulk appends) stay only in their data files: big files scan cheaply per row,
# and logging them would write every ingested row twice.
MAX_LOGGED_NEW_ROWS = 65_536


def with_row_images(ctx: DatasetContext, table: pa.Table) -> pa.Table:
    """`table` (a change log) with `_pre` and `_post` columns, when the dataset logs row images."""
    if not ctx.meta.options.log_row_images or table.num_rows == 0:
        return table
    kinds = table.column("_change")
    old = pc.is_in(kinds, pa.array([ch.UPDATE, ch.DELETE]))
    new = pc.is_in(kinds, pa.array([ch.INSERT, ch.UPDATE]))
    # A log without a column of images reads as all null (a bulk load has no old rows: a column of a
    # million nulls would cost more to decode than the log's keys).
    if pc.any(old).as_py():
        table = table.append_column(pa.field(ch.PRE, pool_type(ctx)), _images(ctx, table, old, "_old_file", "_old_pos"))
    if 0 < (pc.sum(new).as_py() or 0) <= MAX_LOGGED_NEW_ROWS:
        table = table.append_column(
            pa.field(ch.POST, pool_type(ctx)), _images(ctx, table, new, "_new_file", "_new_pos")
        )
    return table


def _images(ctx: DatasetContext, table: pa.Table, mask: pa.ChunkedArray, file: str, pos: str) -> pa.Array:
    """Stored rows at (`file`, `pos`) of the change rows selected by `mask`; null for the others."""
    wanted = pc.and_(mask, pc.is_valid(table.column(file))).to_numpy(zero_copy_only=False)
    hit = np.nonzero(wanted)[0]
    rows = stored_rows_at(ctx, pc.take(table.column(file), hit), pc.take(table.column(pos), hit))
    structs = pa.StructArray.from_arrays([c.combine_chunks() for c in rows.columns], fields=list(pool_type(ctx)))
    slot = np.full(table.num_rows, -1, dtype=np.int64)
    slot[hit] = np.arange(len(hit))
    return structs.take(pa.array(slot, mask=slot < 0))

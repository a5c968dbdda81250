"""Which pairs of rows differ: the check that drops updates that rewrote a row with identical content."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import bits

# Below this share of pairs still equal, the remaining columns are compared on those pairs alone: taking a
# few rows of both sides costs less than comparing the whole column.
_NARROW = 8


def rows_differ(a: pa.Table, b: pa.Table) -> pa.Array:
    """Per row pair of two tables with the same columns: whether any column differs (nulls equal nulls).

    Fixed-width columns are compared first, and once few pairs are still equal only those are compared
    further: an update usually changes some column, so most pairs are settled by the first columns. Until
    then the columns' answers are combined as Arrow bitmaps (turning each into numpy cost as much as the
    comparison).
    """
    n = a.num_rows
    same: pa.Array | pa.ChunkedArray = bits.to_arrow(np.ones(n, dtype=bool))
    rows: np.ndarray[Any, np.dtype[np.intp]] | None = None  # the pairs still equal, once few are
    for name in sorted(a.column_names, key=lambda c: _cost(a.schema.field(c).type)):
        x, y = a.column(name), b.column(name)
        if rows is None:
            same = pc.and_(same, _equal(x, y))
            if (pc.sum(same).as_py() or 0) * _NARROW <= n:  # the sum of no rows is null
                rows = np.flatnonzero(bits.to_numpy(same))
        else:
            taken = pa.array(rows)
            rows = rows[bits.to_numpy(_equal(x.take(taken), y.take(taken)))]
        if rows is not None and not len(rows):
            break
    if rows is None:
        differ = pc.invert(same)
        return differ.combine_chunks() if isinstance(differ, pa.ChunkedArray) else differ
    changed = np.ones(n, dtype=bool)
    changed[rows] = False
    return bits.to_arrow(changed)


def _cost(kind: pa.DataType) -> int:
    """Order of comparison: fixed-width values, then strings and binaries, then nested values."""
    if pa.types.is_nested(kind):
        return 2
    fixed = pa.types.is_primitive(kind) or pa.types.is_decimal(kind) or pa.types.is_fixed_size_binary(kind)
    return 0 if fixed else 1


def _equal(x: pa.ChunkedArray, y: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    try:
        eq = pc.equal(x, y)
        if x.null_count or y.null_count:
            eq = pc.or_(pc.fill_null(eq, False), pc.and_(pc.is_null(x), pc.is_null(y)))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # nested types
        eq = pa.array([u == v for u, v in zip(x.to_pylist(), y.to_pylist(), strict=True)], pa.bool_())
    return eq

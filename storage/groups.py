"""Rows grouped by their key columns as dense integer ids, for per-key reductions in numpy.

A hash encode per column (Arrow's dictionary_encode) and numpy ufuncs replace an Acero group-by: the
change sets of a diff over many commits are grouped this way on every call, and the group-by's plan set-up
and aggregation kernels cost more than the hashing itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Int64s = npt.NDArray[np.int64]


def key_groups(keys: pa.Table) -> tuple[Int64s, int]:
    """Per row, the id of its key among the distinct keys (numbered in order of first appearance), and how
    many distinct keys there are. Nulls are a key value of their own."""
    ids: Int64s | None = None
    count = 1
    for column in keys.columns:
        codes, size = _encode(column.combine_chunks())
        if ids is None:
            ids, count = codes, size
        else:  # both below the row count, so the pair fits in an int64 while rows < 2**31
            ids, count = _encode(pa.array(ids * size + codes))
    if ids is None:
        raise ValueError("key_groups needs at least one key column")
    return ids, count


def _encode(values: pa.Array) -> tuple[Int64s, int]:
    if pa.types.is_integer(values.type) and values.null_count == 0 and len(values):
        dense = _encode_dense(values.to_numpy())
        if dense is not None:
            return dense
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), len(encoded.dictionary)


def _encode_dense(values: npt.NDArray[np.integer[Any]]) -> tuple[Int64s, int] | None:
    """_encode() of integers spanning a range of at most 16 times their count, by a table indexed by
    value instead of a hash (twice as fast: integer keys of a diff's change logs mostly are such a range);
    None when the range is wider or the table's first-row entries could not be trusted."""
    n = len(values)
    low, high = int(values.min()), int(values.max())
    if high - low > 16 * n + 4096:  # the table then takes at most 128 bytes per value
        return None
    wide = values if values.dtype.itemsize == 8 else values.astype(np.int64)  # narrow types overflow below
    slot = (wide - wide.min()).astype(np.intp, copy=False)
    rows = np.arange(n, dtype=np.int64)
    first_of_value = np.empty(high - low + 1, dtype=np.int64)
    # Written back to front so each value's first row is written last; numpy does not promise that order
    # for repeated indices, and any other winner shows as a row whose "first" row comes after it.
    first_of_value[slot[::-1]] = rows[::-1]
    first = first_of_value[slot]
    if (first > rows).any():
        return None
    is_first = first == rows
    code_at = np.cumsum(is_first, dtype=np.int64) - 1
    return code_at[first], int(code_at[-1]) + 1


def first_last(ids: Int64s, count: int, where: npt.NDArray[np.bool_] | None = None) -> tuple[Int64s, Int64s]:
    """Per group, the first and last row number holding it (among the rows `where` is true), -1 if none."""
    n = len(ids)
    rows = np.arange(n, dtype=np.int64)
    if where is not None:
        ids, rows = ids[where], rows[where]
    first = np.full(count, n, dtype=np.int64)
    last = np.full(count, -1, dtype=np.int64)
    np.minimum.at(first, ids, rows)
    np.maximum.at(last, ids, rows)
    first[last < 0] = -1
    return first, last

"""Key grouping used by diff()'s net change, checked against plain Python over random keys."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.groups import first_last, key_groups

small_ints = st.one_of(st.none(), st.integers(-3, 3))
words = st.one_of(st.none(), st.sampled_from(["a", "b", "é", ""]))


@given(st.lists(st.tuples(small_ints, words), max_size=60), st.lists(st.booleans(), max_size=60))
def test_groups_and_first_last_match_a_python_model(
    rows: list[tuple[int | None, str | None]], mask: list[bool]
) -> None:
    keys = pa.table({"a": pa.array([r[0] for r in rows], pa.int64()), "b": pa.array([r[1] for r in rows], pa.string())})
    if not rows:
        return
    ids, count = key_groups(keys)
    order: dict[tuple[int | None, str | None], int] = {}
    for r in rows:
        order.setdefault(r, len(order))
    assert count == len(order)
    assert ids.tolist() == [order[r] for r in rows]  # numbered by first appearance, nulls a value of their own

    where = np.array((mask + [True] * len(rows))[: len(rows)])
    first, last = first_last(ids, count, where)
    for key, g in order.items():
        hits = [i for i, r in enumerate(rows) if r == key and where[i]]
        assert (first[g], last[g]) == ((hits[0], hits[-1]) if hits else (-1, -1))
    all_first, all_last = first_last(ids, count)
    for key, g in order.items():
        hits = [i for i, r in enumerate(rows) if r == key]
        assert (all_first[g], all_last[g]) == (hits[0], hits[-1])


def test_one_key_column_and_chunked_input() -> None:
    keys = pa.table({"id": pa.chunked_array([[5, 7], [5, 9, 7]], pa.int64())})
    ids, count = key_groups(keys)
    assert count == 3 and ids.tolist() == [0, 1, 0, 2, 1]


def test_no_key_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one key column"):
        key_groups(pa.table({}))


@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=40),
    st.sampled_from(["int8", "int64", "uint64"]),
    st.integers(0, 5),
)
def test_integer_keys_group_as_a_hash_would(values: list[int], kind: str, spread: int) -> None:
    """Integer keys spanning a narrow range take a table indexed by value; wide ones a hash. Both number
    keys by first appearance."""
    info = np.iinfo(kind)
    base = min(max(values[0], info.min), info.max - 50 * spread)
    narrow = [base + v % (spread * 10 + 1) for v in values]  # within the table's reach
    for column in (narrow, [min(max(v, info.min), info.max) for v in values]):
        order: dict[int, int] = {}
        for v in column:
            order.setdefault(v, len(order))
        ids, count = key_groups(pa.table({"k": pa.array(column, getattr(pa, kind)())}))
        assert count == len(order) and ids.tolist() == [order[v] for v in column]

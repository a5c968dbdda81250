"""rows_differ() against plain Python over random row pairs, in both of its modes."""

from __future__ import annotations

import math

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from storage.compare import rows_differ

SCHEMA = pa.schema(
    [
        pa.field("label", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("n", pa.int64()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("ok", pa.bool_()),
    ]
)
VALUES = {
    "label": st.one_of(st.none(), st.sampled_from(["cat", "dog", ""])),
    # Wide ranges, so that rows drawn apart rarely match and the narrowed mode is reached.
    "score": st.one_of(st.none(), st.just(math.nan), st.floats(allow_nan=False)),
    "n": st.one_of(st.none(), st.integers(-1000, 1000)),
    "tags": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b"]), max_size=2)),
    "ok": st.one_of(st.none(), st.booleans()),
}
row = st.fixed_dictionaries(VALUES)


def _table(rows: list[dict[str, object]], cut: int) -> pa.Table:
    """`rows` as a table of two chunks, split at `cut`."""
    head, tail = rows[:cut], rows[cut:]
    return pa.Table.from_batches(
        [pa.RecordBatch.from_pylist(part, schema=SCHEMA) for part in (head, tail)], schema=SCHEMA
    )


@given(
    st.lists(st.tuples(row, row, st.integers(0, 31), st.sampled_from(SCHEMA.names)), max_size=40),
    st.integers(0, 40),
    st.integers(0, 40),
)
def test_rows_differ_matches_python(pairs: list[tuple[dict, dict, int, str]], cut_a: int, cut_b: int) -> None:
    # Right rows: a copy of the left one, the copy with one column taken from another row (both rare, so
    # that few pairs stay equal and the narrowed mode is reached), or another row.
    left = [a for a, *_ in pairs]
    right = []
    for a, b, kind, column in pairs:
        right.append(dict(a) if kind == 0 else {**a, column: b[column]} if kind <= 2 else b)
    got = rows_differ(_table(left, cut_a), _table(right, cut_b)).to_pylist()
    # NaN differs from itself, as Arrow's comparison says; None equals None.
    want = [any(a[c] != b[c] for c in SCHEMA.names) for a, b in zip(left, right, strict=True)]
    assert got == want


def test_few_equal_pairs_are_compared_on_every_column() -> None:
    """Once most pairs differ in a fixed-width column, the rest are compared on the pairs still equal: a
    difference only in the last column compared must still count."""
    n = 100
    left = pa.table({"x": list(range(n)), "tag": ["a"] * n})
    right = pa.table({"x": [i if i < 5 else -1 for i in range(n)], "tag": ["a", "b", "a", "b", "a"] + ["a"] * 95})
    got = rows_differ(left, right).to_pylist()
    assert got == [False, True, False, True, False] + [True] * 95


def test_no_rows() -> None:
    empty = pa.table({"x": pa.array([], pa.int64())})
    assert rows_differ(empty, empty).to_pylist() == []

"""storage.bits against pyarrow's own conversions, on sliced and chunked arrays of several types."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import bits

maybe_bools = st.lists(st.one_of(st.none(), st.booleans()), max_size=70)
cuts = st.tuples(st.integers(0, 70), st.integers(0, 70))


def _chunked(values: list[object], cut: tuple[int, int], kind: pa.DataType) -> pa.ChunkedArray:
    """`values` as a chunked array: a slice (`cut[0]` values off the front) of one array, and the rest."""
    whole = pa.array([None] * min(cut[0], 9) + values, kind).slice(min(cut[0], 9))
    at = min(cut[1], len(values))
    return pa.chunked_array([whole.slice(0, at), whole.slice(at)], kind)


@given(maybe_bools, cuts)
def test_to_numpy_reads_nulls_as_false(values: list[bool | None], cut: tuple[int, int]) -> None:
    array = _chunked(values, cut, pa.bool_())
    assert bits.to_numpy(array).tolist() == [bool(v) for v in values]
    assert bits.to_numpy(array.chunk(0)).tolist() == [bool(v) for v in values[: len(array.chunk(0))]]


@pytest.mark.parametrize(
    "kind, value",
    [
        (pa.int64(), 7),
        (pa.string(), "cat"),
        (pa.dictionary(pa.int32(), pa.string()), "cat"),
        (pa.struct([("a", pa.int64())]), {"a": 1}),
    ],
)
@given(present=st.lists(st.booleans(), max_size=70), cut=cuts)
def test_valid_is_is_valid(kind: pa.DataType, value: object, present: list[bool], cut: tuple[int, int]) -> None:
    array = _chunked([value if p else None for p in present], cut, kind)
    assert bits.valid(array).tolist() == pc.is_valid(array).to_pylist() == present


def test_valid_of_a_null_typed_array_and_of_nothing() -> None:
    assert bits.valid(pa.nulls(3)).tolist() == [False] * 3
    assert bits.valid(pa.chunked_array([], pa.int64())).tolist() == []


def test_to_numpy_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="takes booleans"):
        bits.to_numpy(pa.array([1]))


@given(st.lists(st.booleans(), max_size=70))
def test_to_arrow_is_pa_array(mask: list[bool]) -> None:
    assert bits.to_arrow(np.array(mask, dtype=bool)).equals(pa.array(mask, pa.bool_()))


@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.booleans()), max_size=70))
def test_with_nulls_is_a_masked_pa_array(pairs: list[tuple[int, bool]]) -> None:
    values = np.array([v for v, _ in pairs], dtype=np.int64)
    null = np.array([n for _, n in pairs], dtype=bool)
    made = bits.with_nulls(values, null)
    made.validate(full=True)
    assert made.equals(pa.array(values, mask=null))
    assert made.null_count == null.sum()
    assert bits.with_nulls(values, None).equals(pa.array(values))

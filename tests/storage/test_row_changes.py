"""The change rows of an upsert chunk: which keys update a located row and which are inserts; and how a
composition of change logs reads their change types."""

from __future__ import annotations

import pyarrow as pa
import pytest

from storage import changes, writes
from storage.formats import POS_COLUMN
from storage.scan import FILE_COLUMN


def _hits(keys: list[int], files: list[str], positions: list[int]) -> pa.Table:
    return pa.table({"k": pa.array(keys, pa.int64()), POS_COLUMN: positions, FILE_COLUMN: files})


def _rows(changes: pa.Table) -> list[tuple[object, ...]]:
    names = ["k", "_change", "_old_file", "_old_pos", "_new_file", "_new_pos"]
    return sorted(zip(*(changes.column(n).to_pylist() for n in names), strict=True), key=str)


@pytest.mark.parametrize(
    "hits",
    [
        _hits([7, 3], ["a", "b"], [4, 0]),
        _hits([], [], []),
        _hits([3, 9, 3], ["a", "a", "b"], [1, 2, 5]),  # key 3 lives twice (a damaged dataset): both are listed
    ],
    ids=["located", "none", "twice"],
)
def test_row_changes_list_each_located_row_as_an_update(hits: pa.Table) -> None:
    keys = pa.table({"k": pa.array([3, 5, 7, 9], pa.int64())})
    got = _rows(writes._row_changes(keys, hits, "new"))
    new_pos = {3: 0, 5: 1, 7: 2, 9: 3}
    located = list(
        zip(
            hits.column("k").to_pylist(),
            hits.column(FILE_COLUMN).to_pylist(),
            hits.column(POS_COLUMN).to_pylist(),
            strict=True,
        )
    )
    want = [(k, "update", f, p, "new", new_pos[k]) for k, f, p in located]
    want += [(k, "insert", None, None, "new", new_pos[k]) for k in new_pos if k not in {h[0] for h in located}]
    assert got == sorted(want, key=str)


def test_first_letters_tell_every_change_type_apart() -> None:
    kinds = [changes.INSERT, changes.UPDATE, changes.DELETE, changes.MOVE]
    assert len({k[0] for k in kinds}) == len(kinds), "a new change type needs a first letter of its own"
    values = kinds * 3
    # Sliced chunks start inside their buffers, and empty chunks have none.
    column = pa.chunked_array([pa.array(values).slice(1, 5), pa.array([], pa.string()), pa.array(values[6:])])
    assert [chr(c) for c in changes.first_letters(column)] == [v[0] for v in values[1:6] + values[6:]]
    assert changes.first_letters(pa.chunked_array([], pa.string())).size == 0

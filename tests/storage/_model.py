"""A plain in-memory model of a keyed, versioned dataset, and the row helpers the storage tests share.

The model is deliberately naive (a dict from primary key to row per version) so that it is obviously
right; the engine's answers are compared against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from storage import Dataset

Row = dict[str, Any]
Key = tuple[Any, ...]
InputForm = Literal["table", "batch", "dict", "batches"]
INPUT_FORMS: tuple[InputForm, ...] = ("table", "batch", "dict", "batches")
MakeDataset = Callable[..., Dataset]  # the `make_dataset` fixture


@dataclass(frozen=True)
class Layout:
    """The shape of a test dataset: its schema and primary key columns."""

    name: str
    schema: pa.Schema
    primary_keys: tuple[str, ...]

    def key(self, row: Mapping[str, Any]) -> Key:
        """The primary key of a row, as a tuple in key-column order."""
        return tuple(row[k] for k in self.primary_keys)

    def key_arg(self, key: Key) -> Any:
        """A key as the engine's `keys=` / `take()` accept it: a scalar for one column, a tuple otherwise."""
        return key[0] if len(key) == 1 else key

    def row(self, key: Key, label: str | None, score: int | None) -> Row:
        """A full row for `key` with the two payload columns every layout has."""
        return {**dict(zip(self.primary_keys, key, strict=True)), "label": label, "score": score}

    def sorted_rows(self, rows: Iterable[Row]) -> list[Row]:
        """Rows in key order, so tables can be compared regardless of file and batch order."""
        return sorted(rows, key=self.key)

    def table(self, rows: Sequence[Row]) -> pa.Table:
        """Rows as a table of the layout's schema."""
        return pa.Table.from_pylist(list(rows), schema=self.schema)


# `label` and `score` are nullable on purpose: nulls must not match filters and must not break file pruning.
SINGLE_KEY = Layout(
    "single",
    pa.schema([pa.field("id", pa.int64(), nullable=False), ("label", pa.string()), ("score", pa.int64())]),
    ("id",),
)
COMPOSITE_KEY = Layout(
    "composite",
    pa.schema(
        [
            pa.field("shard", pa.string(), nullable=False),
            pa.field("id", pa.int64(), nullable=False),
            ("label", pa.string()),
            ("score", pa.int64()),
        ]
    ),
    ("shard", "id"),
)
LAYOUTS = (SINGLE_KEY, COMPOSITE_KEY)


def as_input(layout: Layout, rows: Sequence[Row], form: InputForm, batch_rows: int = 3) -> Any:
    """Rows in one of the input forms writes accept; "batches" is a lazy generator, as a stream would be."""
    table = layout.table(rows)
    if form == "table":
        return table
    if form == "batch":
        return (
            table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], layout.schema)
        )
    if form == "dict":
        return {name: table.column(name).to_pylist() for name in table.column_names}

    def stream() -> Iterator[pa.RecordBatch]:
        for start in range(0, table.num_rows, batch_rows):
            yield from table.slice(start, batch_rows).to_batches()

    return stream()


@dataclass
class Model:
    """Every version of a dataset as {key: row}; index = snapshot id (one branch, so ids are dense)."""

    layout: Layout
    versions: list[dict[Key, Row]] = field(default_factory=lambda: [{}])
    tags: dict[str, int] = field(default_factory=dict)

    @property
    def head_id(self) -> int:
        """The newest snapshot id."""
        return len(self.versions) - 1

    @property
    def head(self) -> dict[Key, Row]:
        """The newest version's rows by key."""
        return self.versions[-1]

    def rows(self, version: int | None = None) -> list[Row]:
        """A version's rows in key order (default: the newest)."""
        state = self.head if version is None else self.versions[version]
        return self.layout.sorted_rows(state.values())

    def existing(self, rows: Iterable[Row]) -> list[Key]:
        """Keys among `rows` that the newest version already has."""
        return [self.layout.key(r) for r in rows if self.layout.key(r) in self.head]

    def _commit(self, state: dict[Key, Row]) -> int:
        self.versions.append(state)
        return self.head_id

    def upsert(self, rows: Iterable[Row]) -> int:
        """Insert or wholly replace rows by key (append/insert are this, once conflicts are ruled out)."""
        state = dict(self.head)
        for r in rows:
            state[self.layout.key(r)] = dict(r)
        return self._commit(state)

    def delete_keys(self, keys: Iterable[Key]) -> int:
        """Remove rows by key; absent keys are ignored."""
        gone = set(keys)
        return self._commit({k: r for k, r in self.head.items() if k not in gone})

    def delete_where(self, predicate: Callable[[Row], bool]) -> int:
        """Remove rows the predicate holds for (a null comparison is false, as in Arrow filters)."""
        return self._commit({k: r for k, r in self.head.items() if not predicate(r)})

    def replace(self, rows: Iterable[Row]) -> int:
        """A new version holding exactly `rows`."""
        return self._commit({self.layout.key(r): dict(r) for r in rows})

    def diff(self, start: int, end: int) -> list[tuple[str, Row]]:
        """Net change between two versions as (change type, row), in the layout's key order per type."""
        a, b = self.versions[start], self.versions[end]
        out = [("insert", b[k]) for k in b if k not in a]
        out += [("delete", a[k]) for k in a if k not in b]
        changed = [k for k in a if k in b and a[k] != b[k]]
        out += [("update_preimage", a[k]) for k in changed] + [("update_postimage", b[k]) for k in changed]
        return sorted(out, key=lambda e: (e[0], self.layout.key(e[1])))

    def restore(self, version: int) -> int:
        """A new version equal to an old one."""
        return self._commit(dict(self.versions[version]))


def label_is(label: str) -> Callable[[Row], bool]:
    """Model twin of `pc.field("label") == label`."""
    return lambda r: r["label"] == label


def score_between(lo: int, hi: int) -> Callable[[Row], bool]:
    """Model twin of `(pc.field("score") >= lo) & (pc.field("score") <= hi)`: null scores never match."""
    return lambda r: r["score"] is not None and lo <= r["score"] <= hi


def engine_diff(ds: Any, start: Any, end: Any, layout: Layout) -> list[tuple[str, Row]]:
    """`ds.diff(start, end)` as (change type, row) pairs, in the order of Model.diff()."""
    out = []
    for r in ds.diff(start, end).to_pylist():
        kind = r.pop("_change_type")
        out.append((kind, r))
    return sorted(out, key=lambda e: (e[0], layout.key(e[1])))


def reachable(start: int, parents_of: Callable[[int], Iterable[int]]) -> set[int]:
    """`start` and every snapshot id it descends from through `parents_of` (no parents: the line ends)."""
    seen: set[int] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(parents_of(current))
    return seen

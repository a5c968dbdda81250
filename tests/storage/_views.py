"""The view tests' sources (items, cats), their view plans, and each plan's plain-Python twin.

A plan's twin recomputes the view row by row from {key: row} states of the sources, so the engine's
incremental refreshes are compared with something obviously right. Functions are in `view_udfs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import view_udfs as u
from _model import Key, Layout, Row

from storage import Catalog, Dataset, View

ITEMS = Layout(
    "items",
    pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            ("label", pa.string()),
            ("score", pa.int64()),
            ("cat_id", pa.int64()),
        ]
    ),
    ("id",),
)
CATS = Layout(
    "cats",
    pa.schema([pa.field("cat_id", pa.int64(), nullable=False), ("name", pa.string()), ("weight", pa.int64())]),
    ("cat_id",),
)
CAT_FIELDS = [CATS.schema.field("name"), CATS.schema.field("weight")]
DESC = pa.field("desc", pa.string())
# Outputs of the join plans: left columns, the right side's non-key columns, then describe's column.
INNER_SCHEMA = pa.schema([*u.TAGGED_SCHEMA, *CAT_FIELDS, DESC])
LEFT_SCHEMA = pa.schema([*ITEMS.schema, *CAT_FIELDS, DESC])

State = dict[Key, Row]  # one source version: primary key -> row


@dataclass(frozen=True)
class Plan:
    """A view over items (and cats) and its twin: expected(items, cats) -> the view's rows."""

    name: str
    build: Callable[[Dataset, Dataset], View]
    expected: Callable[[State, State], list[Row]]
    sources: tuple[str, ...]


def _map_filter(items: State, cats: State) -> list[Row]:
    tagged = [u.tag_items_row(r) for r in items.values() if u.label_not_null_row(r)]
    return [r for r in tagged if u.score2_not_multiple_of_3_row(r)]


def _cat_columns(cats: State, cat_id: Any) -> Row | None:
    row = cats.get((cat_id,)) if cat_id is not None else None
    return None if row is None else {"name": row["name"], "weight": row["weight"]}


def _inner_join(items: State, cats: State) -> list[Row]:
    out = []
    for row in items.values():
        tagged = u.tag_items_row(row)
        cat = _cat_columns(cats, tagged["cat_id"])
        if cat is not None:
            out.append(u.describe_row({**tagged, **cat}))
    return out


def _left_join(items: State, cats: State) -> list[Row]:
    heavy = {k: r for k, r in cats.items() if u.heavy_cats_row(r)}
    missing = {"name": None, "weight": None}
    return [
        u.describe_row({**row, **(_cat_columns(heavy, row["cat_id"]) or missing)})
        for row in items.values()
        if u.label_not_null_row(row)
    ]


def _shifted_join(items: State, cats: State) -> list[Row]:
    missing = {"name": None, "weight": None}
    shifted = [u.shift_cat_row(r) for r in items.values()]
    return [{**row, **(_cat_columns(cats, row["cat_id"]) or missing)} for row in shifted]


PLANS = {
    plan.name: plan
    for plan in (
        Plan(
            "map_filter",
            lambda items, cats: (
                items.filter(u.label_not_null)
                .map_batches(u.tag_items, u.TAGGED_SCHEMA)
                .filter(u.score2_not_multiple_of_3)
            ),
            _map_filter,
            ("items",),
        ),
        Plan(
            "inner_join",
            lambda items, cats: (
                items.map_batches(u.tag_items, u.TAGGED_SCHEMA)
                .join(cats, on=["cat_id"], how="inner")
                .map_batches(u.describe, INNER_SCHEMA)
            ),
            _inner_join,
            ("items", "cats"),
        ),
        Plan(
            "left_join",
            lambda items, cats: (
                items.filter(u.label_not_null)
                .join(cats.filter(u.heavy_cats), on=["cat_id"], how="left")  # a light cat: null columns
                .map_batches(u.describe, LEFT_SCHEMA)
            ),
            _left_join,
            ("items", "cats"),
        ),
    )
}
# A map that rewrites the join column before the join: a right-side change reaches left rows through it.
SHIFTED_JOIN = Plan(
    "shifted_join",
    lambda items, cats: items.map_batches(u.shift_cat, ITEMS.schema).join(cats, on=["cat_id"], how="left"),
    _shifted_join,
    ("items", "cats"),
)


def create_sources(catalog: Catalog) -> tuple[Dataset, Dataset]:
    """Empty items and cats datasets."""
    return tuple(  # type: ignore[return-value]
        catalog.create_dataset(layout.name, layout.schema, primary_keys=list(layout.primary_keys))
        for layout in (ITEMS, CATS)
    )


def by_key(layout: Layout, rows: list[Row]) -> State:
    """Rows as a {key: row} state."""
    return {layout.key(r): r for r in rows}


def sort_rows(rows: list[Row]) -> list[Row]:
    """View rows in key order (every plan is keyed by items.id)."""
    return sorted(rows, key=lambda r: r["id"])


def table_rows(table: pa.Table) -> list[Row]:
    """A table's rows in key order."""
    return sort_rows(table.to_pylist())

"""A source's changes to a project's canonical datasets: rows to upsert, and what they make stale.

Sources describe deletions by scope, because they rarely know our keys: a webhook says "annotation 5
was deleted", an export says "this is the whole project". `stale_keys` turns a scope into the keys to
delete, given the keys a dataset holds now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from storage.groundtruth import SPECS

Table = Literal["items", "annotations", "predictions"]
TABLES: tuple[Table, ...] = ("items", "annotations", "predictions")  # the order commits go in


@dataclass(frozen=True)
class ChangeSet:
    """Rows to upsert per canonical table, and the scopes they replace.

    - `whole_project`: the rows are the whole project; every other existing row is stale.
    - `replaced_items`: every annotation and prediction of these items is among the rows.
    - `replaced_submissions`: every row of these submissions is among the rows (none: it was deleted).
    - `deleted_items`: these items are gone at the source, with their annotations and predictions.
    """

    items: pa.Table
    annotations: pa.Table
    predictions: pa.Table
    whole_project: bool = False
    replaced_items: tuple[str, ...] = ()
    replaced_submissions: tuple[str, ...] = ()
    deleted_items: tuple[str, ...] = ()


def canonical_table(table: Table, rows: list[dict[str, Any]]) -> pa.Table:
    """Row dicts as a table of the canonical schema of `table` (types are never inferred)."""
    return pa.Table.from_pylist(rows, schema=SPECS[table].schema)


def stale_keys(change: ChangeSet, table: Table, existing: pa.Table) -> list[str]:
    """Keys of `existing` rows of `table` that `change` makes stale: delete them after the upsert.

    `existing` needs the column `id`, and for annotations and predictions also `item_id` and
    `submission_id` (e.g. `ds.read_all(columns=["id", "item_id", "submission_id"])`).
    """
    upserted: pa.Table = getattr(change, table)
    not_upserted = pc.invert(pc.is_in(existing["id"], value_set=upserted["id"]))
    stale = existing.filter(pc.and_(not_upserted, _in_scope(change, table, existing)))
    return [str(key) for key in stale["id"].to_pylist()]


def compose(first: ChangeSet, second: ChangeSet) -> ChangeSet | None:
    """The one change set whose effect equals applying `first`, then `second`; None if there is none.

    There is none when a scope of `second` covers a row `first` upserts and `second` does not upsert
    again: `second` deletes that row, but which version (the one before `first`, or `first`'s, if they
    differ in item or submission) only the dataset knows. Such changes are applied one after the other.
    """
    tables: dict[str, pa.Table] = {}
    for table in TABLES:
        earlier: pa.Table = getattr(first, table)
        later: pa.Table = getattr(second, table)
        kept = pc.invert(pc.is_in(earlier["id"], value_set=later["id"]))
        if earlier.filter(pc.and_(kept, _in_scope(second, table, earlier))).num_rows:
            return None
        # One chunk: folding hundreds of webhooks would otherwise leave each column in hundreds of chunks, and
        # every later compute call pays per chunk.
        tables[table] = pa.concat_tables([earlier.filter(kept), later]).combine_chunks()
    return ChangeSet(
        items=tables["items"],
        annotations=tables["annotations"],
        predictions=tables["predictions"],
        whole_project=first.whole_project or second.whole_project,
        replaced_items=_union(first.replaced_items, second.replaced_items),
        replaced_submissions=_union(first.replaced_submissions, second.replaced_submissions),
        deleted_items=_union(first.deleted_items, second.deleted_items),
    )


def _in_scope(change: ChangeSet, table: Table, rows: pa.Table) -> pa.Array:
    """Which of `rows` the change's scopes cover (upserted or not)."""
    if change.whole_project:
        return pa.array([True] * rows.num_rows, pa.bool_())
    if table == "items":
        return pc.is_in(rows["id"], value_set=pa.array(change.deleted_items, pa.string()))
    items = pa.array(change.replaced_items + change.deleted_items, pa.string())
    submissions = pa.array(change.replaced_submissions, pa.string())
    return pc.or_(
        pc.is_in(rows["item_id"], value_set=items),
        pc.is_in(rows["submission_id"], value_set=submissions),
    )


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(first + second))

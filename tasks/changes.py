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
    if change.whole_project:
        return [str(key) for key in existing.filter(not_upserted)["id"].to_pylist()]
    if table == "items":
        in_scope = pc.is_in(existing["id"], value_set=pa.array(change.deleted_items, pa.string()))
    else:
        items = pa.array(change.replaced_items + change.deleted_items, pa.string())
        submissions = pa.array(change.replaced_submissions, pa.string())
        in_scope = pc.or_(
            pc.is_in(existing["item_id"], value_set=items),
            pc.is_in(existing["submission_id"], value_set=submissions),
        )
    stale = existing.filter(pc.and_(not_upserted, in_scope))
    return [str(key) for key in stale["id"].to_pylist()]

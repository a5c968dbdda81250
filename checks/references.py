"""References between rows: annotations point at existing items, relations at existing regions."""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa

from .report import RowReasons


def missing_items(table: pa.Table, item_ids: Collection[str]) -> RowReasons:
    """Rows whose `item_id` is not among `item_ids` (the batch's items plus the dataset's)."""
    known = set(item_ids)
    return {
        row: f"item {item!r} does not exist (not in this batch, nor in the items dataset)"
        for row, item in enumerate(table.column("item_id").to_pylist())
        if item not in known
    }


def dangling_relations(table: pa.Table) -> RowReasons:
    """Relation rows whose endpoints are not regions of the same submission."""
    rows = table.select(["submission_id", "region_id", "kind", "relation"]).to_pylist()
    regions = {(r["submission_id"], r["region_id"]) for r in rows if r["kind"] != "relation"}
    failing: dict[int, str] = {}
    for row, record in enumerate(rows):
        relation = record["relation"]
        if record["kind"] != "relation":
            continue
        ends = [relation and relation[end] for end in ("from_id", "to_id")]
        missing = [end for end in ends if (record["submission_id"], end) not in regions]
        if missing:
            failing[row] = f"relation points at region(s) {missing} that {record['submission_id']} does not have"
    return failing

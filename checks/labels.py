"""Labels against the project's class map (the labels each control of the labeling config allows)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pyarrow as pa

from .report import RowReasons

ClassMap = Mapping[str, Collection[str] | None]
"""Allowed labels per control name; None allows any label (labels that come from the task data)."""


def labels_outside_class_map(
    table: pa.Table, class_map: ClassMap, relation_labels: Collection[str] | None = None
) -> RowReasons:
    """Rows with a label their control does not allow, or from a control the class map does not know.

    Relations (which have no control) are checked against `relation_labels` when it is given.
    """
    failing: dict[int, str] = {}
    rows = table.select(["kind", "from_name", "labels"]).to_pylist()
    for row, record in enumerate(rows):
        labels = record["labels"] or []
        if not labels:
            continue
        if record["kind"] == "relation":
            allowed, owner = relation_labels, "the relation labels"
        elif record["from_name"] not in class_map:
            failing[row] = f"control {record['from_name']!r} is not in the labeling config (labels {labels})"
            continue
        else:
            allowed, owner = class_map[record["from_name"]], f"control {record['from_name']!r}"
        unknown = [label for label in labels if allowed is not None and label not in allowed]
        if unknown:
            failing[row] = f"label(s) {unknown} not allowed by {owner}; allowed: {sorted(allowed or [])}"
    return failing

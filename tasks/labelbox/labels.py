"""Labelbox labels (one per project, labeler and consensus vote) as canonical annotation rows.

A label is one submission, `label:<label id>` (label ids are unique across projects, so a data row
in several projects keeps every project's labels apart; `source_pointer` names the project). Status:
a skipped label is `cancelled` (one `empty` row, like a cancelled Label Studio annotation), a
benchmark reference is `ground_truth`, any other label (consensus votes included) is `submitted`.
Reviews, consensus scores and workflow details stay in the item's `raw`.
"""

from __future__ import annotations

import json
from typing import Any

from storage.groundtruth import region_row_id

from ..json_node import Node
from ..provenance import Provenance
from .annotations import region_rows
from .data_rows import DataRow


def label_rows(label: Node, data_row: DataRow, provenance: Provenance) -> list[dict[str, Any]]:
    """One row per region of `label`, or one `empty` row when it has none (skipped, or empty)."""
    if not isinstance(label.value, dict):
        raise label.expect("a label object")
    details, performance = label.child("label_details"), label.child("performance_details")
    submission = f"label:{label.child('id').as_id() or '#' + label.pointer.rsplit('/', 1)[-1]}"
    skipped = any(node.child("skipped").as_bool() for node in (performance, label))
    benchmark = any(node.child("is_benchmark_reference").as_bool() for node in (label, details))
    author = details.child("created_by").as_str()
    common = {
        "item_id": data_row.item,
        "submission_id": submission,
        "status": "cancelled" if skipped else "ground_truth" if benchmark else "submitted",
        # Exports name users only by email, which is their stable identity in Labelbox.
        "annotator": author,
        "annotator_email": author,
        "created_at": details.child("created_at").as_timestamp(),
        "updated_at": details.child("updated_at").as_timestamp(),
        "lead_time_s": performance.child("seconds_to_create").as_float(),
    }
    regions = [] if skipped else region_rows(label.child("annotations"), data_row)
    if not regions:
        raw = json.dumps(label.value, ensure_ascii=False)  # the label itself: its skip, reviews, votes
        regions = [{"region_id": None, "kind": "empty", "raw": raw, "source_pointer": label.pointer}]
    rows = []
    for region in regions:
        raw, pointer = region.pop("raw"), region.pop("source_pointer")
        rows.append(
            {
                **common,
                **region,
                "id": region_row_id(data_row.item, submission, region["region_id"]),
                **provenance.columns(raw, pointer),
            }
        )
    return rows

"""Which existing rows a change set makes stale, per scope."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from tasks.changes import ChangeSet, canonical_table, stale_keys

EXISTING = pa.table(
    {
        "id": ["a:1/annotation:1/r", "a:1/annotation:1/gone", "a:2/annotation:2/r", "a:3/annotation:3/r"],
        "item_id": ["a:1", "a:1", "a:2", "a:3"],
        "submission_id": ["annotation:1", "annotation:1", "annotation:2", "annotation:3"],
    }
)


def _change(annotation_ids: list[str]) -> ChangeSet:
    rows = [{"id": i, "item_id": i.split("/")[0], "submission_id": i.split("/")[1], "status": "submitted",
             "kind": "box", "source": "s", "source_ref": "r", "source_pointer": "", "raw": "[]"}
            for i in annotation_ids]  # fmt: skip
    return ChangeSet(
        items=canonical_table("items", []),
        annotations=canonical_table("annotations", rows),
        predictions=canonical_table("predictions", []),
    )


def test_whole_project_makes_everything_else_stale():
    change = replace(_change(["a:1/annotation:1/r"]), whole_project=True)
    assert stale_keys(change, "annotations", EXISTING) == EXISTING["id"].to_pylist()[1:]
    assert stale_keys(change, "items", pa.table({"id": ["a:1", "a:9"]})) == ["a:1", "a:9"]


def test_replaced_submission_drops_its_missing_regions_only():
    change = replace(_change(["a:1/annotation:1/r"]), replaced_submissions=("annotation:1",))
    assert stale_keys(change, "annotations", EXISTING) == ["a:1/annotation:1/gone"]


def test_deleted_submission_and_items():
    deleted = replace(_change([]), replaced_submissions=("annotation:2",), deleted_items=("a:3",))
    assert stale_keys(deleted, "annotations", EXISTING) == ["a:2/annotation:2/r", "a:3/annotation:3/r"]
    assert stale_keys(deleted, "items", pa.table({"id": ["a:1", "a:3"]})) == ["a:3"]


def test_replaced_items_and_plain_upserts():
    change = replace(_change(["a:2/annotation:2/r"]), replaced_items=("a:1", "a:2"))
    assert stale_keys(change, "annotations", EXISTING) == ["a:1/annotation:1/r", "a:1/annotation:1/gone"]
    assert stale_keys(_change(["a:2/annotation:2/r"]), "annotations", EXISTING) == []

"""Which existing rows a change set makes stale, per scope."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tasks.changes import ChangeSet, canonical_table, compose, stale_keys

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


# compose(): applying the composed change set equals applying the two one after the other.

ITEMS = ["a:1", "a:2", "a:3"]
SUBMISSIONS = ["annotation:1", "annotation:2", "annotation:3"]
IDS = [f"r{i}" for i in range(6)]  # an id's item and submission vary, as when a region moves


def _annotation(key: str, item: str, submission: str, version: int) -> dict[str, str]:
    return {"id": key, "item_id": item, "submission_id": submission, "status": f"v{version}", "kind": "box",
            "source": "s", "source_ref": "r", "source_pointer": "", "raw": "[]"}  # fmt: skip


def _item(key: str, version: int) -> dict[str, str]:
    return {"id": key, "source_id": key, "media_type": "image", "source": "s", "source_ref": "r",
            "source_pointer": "", "raw": f"v{version}"}  # fmt: skip


annotation_rows = st.lists(
    st.builds(_annotation, st.sampled_from(IDS), st.sampled_from(ITEMS), st.sampled_from(SUBMISSIONS),
              st.integers(0, 3)),
    max_size=5, unique_by=lambda row: row["id"],
)  # fmt: skip
item_rows = st.lists(
    st.builds(_item, st.sampled_from(ITEMS), st.integers(0, 3)), max_size=3, unique_by=lambda r: r["id"]
)
scope = st.lists(st.sampled_from(ITEMS), max_size=2, unique=True).map(tuple)
change_sets = st.builds(
    lambda items, annotations, whole, replaced, submissions, deleted: ChangeSet(
        items=canonical_table("items", items),
        annotations=canonical_table("annotations", annotations),
        predictions=canonical_table("predictions", []),
        whole_project=whole,
        replaced_items=replaced,
        replaced_submissions=submissions,
        deleted_items=deleted,
    ),
    item_rows,
    annotation_rows,
    st.booleans(),
    scope,
    st.lists(st.sampled_from(SUBMISSIONS), max_size=2, unique=True).map(tuple),
    scope,
)

State = dict[str, dict[str, dict[str, str]]]


def _apply(state: State, change: ChangeSet) -> State:
    """What committing `change` does to the project's rows: drop the stale keys, upsert the rows."""
    out = {}
    for table in ("items", "annotations"):
        rows = state[table]
        existing = canonical_table(table, list(rows.values()))
        stale = set(stale_keys(change, table, existing))
        kept = {key: row for key, row in rows.items() if key not in stale}
        out[table] = kept | {row["id"]: row for row in getattr(change, table).to_pylist()}
    return out


@settings(max_examples=400, deadline=None)
@given(item_rows, annotation_rows, change_sets, change_sets, change_sets)
def test_composed_changes_apply_like_the_sequence(items, annotations, first, second, third):
    state: State = {"items": {r["id"]: r for r in items}, "annotations": {r["id"]: r for r in annotations}}
    sequence, composed = [first, second, third], first
    for later in sequence[1:]:
        merged = compose(composed, later)
        if merged is None:
            event("not composable")
            return  # the flow commits such a change on its own
        composed = merged
    expected = state
    for change in sequence:
        expected = _apply(expected, change)
    assert _apply(state, composed) == expected


def test_independent_webhooks_compose_and_a_delete_after_an_upsert_does_not():
    created = _change(["a:1/annotation:1/r"])
    other = _change(["a:2/annotation:2/r"])
    both = compose(created, other)
    assert both is not None and sorted(both.annotations["id"].to_pylist()) == [
        "a:1/annotation:1/r",
        "a:2/annotation:2/r",
    ]
    deleted = replace(_change([]), replaced_submissions=("annotation:1",))
    assert compose(created, deleted) is None
    updated = replace(_change(["a:1/annotation:1/r"]), replaced_submissions=("annotation:1",))
    assert compose(created, updated) is not None  # the update replaces the submission, re-upserting its row

"""commit_changes: items first, annotations of quarantined items quarantined too, source rejects kept."""

from __future__ import annotations

from storage import Catalog
from storage.groundtruth import dataset_names
from tasks.changes import ChangeSet, canonical_table
from tasks.commit import commit_changes
from tasks.quarantine import rejects_name
from tasks.rejects import SourceReject

PROVENANCE = {"source": "unit", "source_ref": "unit.json", "source_pointer": "/0", "raw": "{}"}


def _item(key: str, media_type: str = "image") -> dict:
    return {"id": f"unit:{key}", "source_id": key, "media_type": media_type, **PROVENANCE}


def _box(key: str) -> dict:
    return {
        "id": f"unit:{key}/annotation:1/r",
        "item_id": f"unit:{key}",
        "submission_id": "annotation:1",
        "region_id": "r",
        "status": "submitted",
        "kind": "box",
        "labels": ["car"],
        "box": {"x": 1.0, "y": 1.0, "w": 2.0, "h": 2.0, "rotation": 0.0},
        **PROVENANCE,
    }


def test_rows_of_a_quarantined_item_are_quarantined_and_source_rejects_recorded(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    change = ChangeSet(
        items=canonical_table("items", [_item("1"), _item("2", media_type="hologram")]),
        annotations=canonical_table("annotations", [_box("1"), _box("2")]),
        predictions=canonical_table("predictions", []),
    )
    unreadable = SourceReject("unit.json", "/7", "unit.json, line 8: not JSON; fix the line", "{oops")
    outcome = commit_changes(
        catalog, "p", change, idempotency_key="k", max_failure_rate=1.0, source_rejects=[unreadable]
    )
    assert (outcome.committed_rows, outcome.rejected_rows) == (2, 3)
    names = dataset_names("p")
    rejected = catalog.dataset(rejects_name(names["annotations"])).read_all().to_pylist()
    assert [(r["row_key"], r["check"]) for r in rejected] == [("unit:2/annotation:1/r", "item_exists")]
    item_rejects = {r["check"] for r in catalog.dataset(rejects_name(names["items"])).read_all().to_pylist()}
    assert "source_format" in item_rejects and any("media_type" in check for check in item_rejects)

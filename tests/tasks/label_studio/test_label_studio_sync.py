"""Webhook payloads and exports applied to real canonical datasets: upserts, scoped deletes, idempotency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Catalog
from storage.groundtruth import GroundTruth, ensure_groundtruth
from tasks.changes import ChangeSet, stale_keys
from tasks.errors import SourceFormatError
from tasks.label_studio import map_webhook, parse_export

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label-studio"
EVENTS = [json.loads(line)["payload"] for line in (FIXTURES / "webhook_events.jsonl").read_text().splitlines()]


def apply(groundtruth: GroundTruth, change: ChangeSet, key: str | None = None) -> None:
    """What the ingest flow does with a change set: upsert, then delete what became stale."""
    for table in ("items", "annotations", "predictions"):
        dataset = getattr(groundtruth, table)
        rows = getattr(change, table)
        if rows.num_rows:
            dataset.upsert(rows, idempotency_key=f"{key}:{table}" if key else None)
        columns = ["id"] if table == "items" else ["id", "item_id", "submission_id"]
        stale = stale_keys(change, table, dataset.read_all(columns=columns))
        if stale:
            dataset.delete(keys=stale)


@pytest.fixture
def groundtruth(tmp_path) -> GroundTruth:
    return ensure_groundtruth(Catalog(tmp_path / "lakehouse"), "demo")


def _labels(groundtruth: GroundTruth) -> dict[str, list[str] | None]:
    rows = groundtruth.annotations.read_all(columns=["id", "labels", "status"]).to_pylist()
    return {r["id"]: r["labels"] for r in rows if r["status"] != "draft"}


def test_webhook_replay_reaches_the_exported_state(groundtruth):
    for payload in EVENTS:
        apply(groundtruth, map_webhook(payload, flow_run_id="run-1"))
    export = parse_export((FIXTURES / "export_json.json").read_bytes()).changes
    expected = {r["id"]: r["labels"] for r in export.annotations.to_pylist() if r["status"] != "draft"}
    assert _labels(groundtruth) == expected  # annotation 4 updated to "fog", annotation 5 deleted
    assert sorted(groundtruth.items.read_all(columns=["id"])["id"].to_pylist()) == sorted(
        export.items["id"].to_pylist()
    )
    assert groundtruth.predictions.read_all(columns=["id"])["id"].to_pylist() == export.predictions["id"].to_pylist()
    assert set(groundtruth.annotations.read_all(columns=["flow_run_id"])["flow_run_id"].to_pylist()) == {"run-1"}


def test_webhook_actions_map_to_scopes():
    deleted = map_webhook(EVENTS[-1])
    assert deleted.replaced_submissions == ("annotation:5",)
    assert deleted.annotations.num_rows == 0
    updated = map_webhook(EVENTS[5])
    assert updated.replaced_submissions == ("annotation:4",)
    assert updated.annotations["labels"].to_pylist() == [["fog"]]
    assert updated.annotations["source_ref"].to_pylist() == ["webhook:ANNOTATION_UPDATED"]
    created = map_webhook(EVENTS[0])
    assert created.items["id"].to_pylist() == ["label-studio:1", "label-studio:2", "label-studio:3"]
    tasks_deleted = map_webhook({"action": "TASKS_DELETED", "tasks": [{"id": 2}]})
    assert tasks_deleted.deleted_items == ("label-studio:2",)
    unrelated = map_webhook({"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert (unrelated.items.num_rows, unrelated.replaced_submissions, unrelated.deleted_items) == (0, (), ())


@pytest.mark.parametrize("payload", [[], {"tasks": []}, {"action": "TASKS_DELETED", "tasks": [7]}])
def test_malformed_webhook_payloads(payload):
    with pytest.raises(SourceFormatError):
        map_webhook(payload)


def test_whole_project_export_sync_and_idempotency(groundtruth):
    source = json.loads((FIXTURES / "export_json.json").read_text())
    first = parse_export(json.dumps(source))
    apply(groundtruth, first.changes, first.idempotency_key)
    versions = groundtruth.annotations.versions().num_rows
    apply(groundtruth, parse_export(json.dumps(source, indent=2)).changes, first.idempotency_key)
    assert groundtruth.annotations.versions().num_rows == versions  # the same export again: no snapshot

    del source[0]["annotations"][1]  # annotation 2 deleted in Label Studio
    del source[2]  # task 3 deleted
    second = parse_export(json.dumps(source))
    apply(groundtruth, second.changes, second.idempotency_key)
    ids = set(groundtruth.annotations.read_all(columns=["id"])["id"].to_pylist())
    assert ids == set(second.changes.annotations["id"].to_pylist())
    assert "label-studio:1/annotation:2/bb2" not in ids
    assert groundtruth.items.read_all(columns=["id"])["id"].to_pylist() == ["label-studio:1", "label-studio:2"]

"""The ingest, refresh and maintenance flows end to end on Prefect's test harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _flowkit import CONFIG, EXPORT, FIXTURES, REPO
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.files import ingest_coco, ingest_labelbox
from flows.label_studio import ingest_label_studio_export, ingest_label_studio_webhook
from flows.maintenance import maintain_catalog
from flows.refresh import refresh_dataset
from storage import Catalog, faults
from tasks.errors import BatchRejectedError

pytestmark = pytest.mark.usefixtures("harness")


def export_with(tmp_path: Path, label: str | None = None, name: str = "export.json") -> str:
    """The fixture export, annotation 2's box relabeled to `label` if given."""
    tasks = json.loads(EXPORT.read_text())
    if label is not None:
        tasks[0]["annotations"][1]["result"][0]["value"]["rectanglelabels"] = [label]
    path = tmp_path / name
    path.write_text(json.dumps(tasks))
    return str(path)


def by_dataset(result: Any) -> dict[str, dict[str, Any]]:
    return {t["dataset"]: t for t in result.record()["datasets"]}


def artifacts_of(flow_run_id: str) -> dict[str, list[Any]]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    kinds: dict[str, list[Any]] = {}
    for artifact in found:
        kinds.setdefault(artifact.type or "", []).append(artifact)
    return kinds


def test_export_ingest_commits_quarantines_and_publishes(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    result = ingest_label_studio_export(
        export_with(tmp_path, "truck"), catalog=catalog, project="demo", config=str(CONFIG)
    )
    tables = by_dataset(result)
    assert (tables["demo__items"]["inserted"], tables["demo__annotations"]["inserted"]) == (3, 9)
    assert tables["demo__annotations"]["rejected"] == 1
    [rejection] = result.record()["rejections"]
    assert rejection["key"] == "label-studio:1/annotation:2/bb2" and rejection["check"] == "label_in_class_map"
    cat = Catalog(catalog)
    assert cat.dataset("demo__annotations__rejects").read_all()["row_key"].to_pylist() == [rejection["key"]]
    assert cat.dataset("demo__annotations").count() == 9
    assert cat.dataset("demo__items").snapshot().properties == {"flow_run_id": result.flow_run_id}
    key = cat.dataset("demo__annotations").snapshot().idempotency_key
    assert key is not None and key.startswith("label-studio:export:") and key.endswith(":annotations")
    assert len(result.events) == 3  # one committed event per changed dataset

    artifacts = artifacts_of(result.flow_run_id)
    assert {"table", "markdown", "progress"} <= set(artifacts)
    report = next(a for a in artifacts["markdown"] if a.key == "demo-ingest-report")
    assert "truck" in str(report.data) and "| demo__annotations | 0 | 1 | 9 | 0 | 0 |" in str(report.data)
    assert all(a.data == 100.0 for a in artifacts["progress"])
    # Link artifacts are markdown links to each version's log entry.
    assert any("demo__annotations/_log/00000000000000000001.json" in str(a.data) for a in artifacts["markdown"])


def test_same_export_again_commits_nothing(tmp_path: Path) -> None:
    catalog, path = str(tmp_path / "lakehouse"), export_with(tmp_path)
    ingest_label_studio_export(path, catalog=catalog, project="p", config=str(CONFIG))
    versions = Catalog(catalog).dataset("p__annotations").versions().num_rows
    again = ingest_label_studio_export(path, catalog=catalog, project="p", config=str(CONFIG))
    assert Catalog(catalog).dataset("p__annotations").versions().num_rows == versions
    assert not any(t["new"] for t in again.record()["datasets"] if t["snapshot_id"] is not None)
    assert again.events == []


def test_export_variant_is_recognised_from_content(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    result = ingest_label_studio_export(
        str(FIXTURES / "export_json_min.json"), catalog=catalog, project="m", config=str(CONFIG)
    )
    assert "(json_min export)" in str(Catalog(catalog).dataset("m__items").snapshot().message)
    assert by_dataset(result)["m__annotations"]["inserted"] > 0


def test_a_batch_failing_too_often_writes_nothing(tmp_path: Path) -> None:
    tasks = json.loads(EXPORT.read_text())
    for task in tasks:
        for annotation in task["annotations"] + task["drafts"]:
            annotation["lead_time"] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(tasks))
    catalog = str(tmp_path / "lakehouse")
    with pytest.raises(BatchRejectedError, match="nothing was written"):
        ingest_label_studio_export.with_options(retries=0)(str(path), catalog=catalog, project="b")
    assert "b__items" not in Catalog(catalog)  # not even the items, which passed


def test_webhook_flow_applies_upserts_and_deletes(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    events = [json.loads(line)["payload"] for line in (FIXTURES / "webhook_events.jsonl").read_text().splitlines()]
    created, updated, deleted = events[0], events[5], events[-1]  # TASKS_CREATED, ANNOTATION_UPDATED, ..._DELETED
    for payload in (created, updated):
        ingest_label_studio_webhook(payload, catalog=catalog, project="hook")
    cat = Catalog(catalog)
    assert cat.dataset("hook__items").count() == 3
    rows = cat.dataset("hook__annotations").read_all(columns=["submission_id", "labels"]).to_pylist()
    assert rows == [{"submission_id": "annotation:4", "labels": ["fog"]}]
    deleted = {**deleted, "annotations": [{"id": 4}]}
    result = ingest_label_studio_webhook(deleted, catalog=catalog, project="hook")
    assert cat.dataset("hook__annotations").count() == 0
    assert by_dataset(result)["hook__annotations"]["deleted"] == 1


def test_a_flow_retried_after_a_crash_before_the_commit_lands_once(tmp_path: Path) -> None:
    """The annotations commit crashes between writing its files and its log entry, three times: the task's
    retries give up, the flow is retried with the same run id, and every dataset gets its rows once."""
    catalog = str(tmp_path / "lakehouse")
    reached: list[str] = []

    def crash_annotations_commit(name: str) -> None:
        if name == "commit.before_log":
            reached.append(name)
            if 2 <= len(reached) <= 4:  # 1: the items commit; 2-4: the annotations commit and its 2 retries
                raise OSError("injected crash between write and commit")

    faults.set_hook(crash_annotations_commit)
    try:
        result = ingest_label_studio_export(export_with(tmp_path), catalog=catalog, project="r", config=str(CONFIG))
    finally:
        faults.set_hook(None)
    cat = Catalog(catalog)
    for table, rows in (("items", 3), ("annotations", 10), ("predictions", 1)):
        ds = cat.dataset(f"r__{table}")
        assert ds.count() == rows
        upserts = [v for v in ds.versions().to_pylist() if v["operation"] == "upsert"]
        assert len(upserts) == 1, f"{table} committed {len(upserts)} times"
    items = cat.dataset("r__items").snapshot()
    assert items.properties == {"flow_run_id": result.flow_run_id}  # the retried run is the same run
    ds = cat.dataset("r__annotations")
    assert ds.validate().snapshots == 2  # create + one upsert: the crashed attempts left no log entry


def test_refresh_brings_a_view_up_to_the_snapshot_and_tags_it(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    ingest_label_studio_export(export_with(tmp_path, "truck"), catalog=catalog, project="v", config=str(CONFIG))
    cat = Catalog(catalog)
    annotations = cat.dataset("v__annotations")
    cat.materialize("v__areas", annotations.map_batches("flows.pipeline_demo:box_areas"))
    fixed = ingest_label_studio_export(export_with(tmp_path, "cyclist", "fixed.json"), catalog=catalog, project="v")
    snapshot = by_dataset(fixed)["v__annotations"]["snapshot_id"]

    outcome = refresh_dataset(catalog, "v__annotations", snapshot)
    [view] = outcome.dependents
    assert (view["name"], view["changed"]) == ("v__areas", True)
    assert cat.materialized_view("v__areas").read_all().num_rows == annotations.count() == 10
    assert annotations.tags()["refreshed"] == snapshot
    late = refresh_dataset(catalog, "v__annotations", snapshot - 1)  # an event arriving out of order
    assert not late.tag_moved and annotations.tags()["refreshed"] == snapshot


def test_maintenance_expires_and_vacuums(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    for label in ("car", "cyclist", "pedestrian"):
        ingest_label_studio_export(export_with(tmp_path, label, f"{label}.json"), catalog=catalog, project="mt")
    outcomes = maintain_catalog(
        catalog, datasets=["mt__annotations"], keep_last=1, older_than_days=0, vacuum_grace_hours=0
    )
    [outcome] = outcomes
    assert outcome.snapshots_expired >= 3 and outcome.files_removed > 0
    ds = Catalog(catalog).dataset("mt__annotations")
    assert ds.count() == 10 and ds.validate().problems == []


def test_coco_and_labelbox_flows_plug_into_the_same_pipeline(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    coco_file = REPO / "tests" / "fixtures" / "coco" / "coco_instances.json"
    coco = ingest_coco(str(coco_file), catalog=catalog, project="c", max_failure_rate=1.0)
    assert by_dataset(coco)["c__items"]["inserted"] == 4
    assert by_dataset(coco)["c__annotations"]["rejected"] == 1  # a degenerate polygon, quarantined
    labelbox = ingest_labelbox(
        str(REPO / "tests" / "fixtures" / "labelbox" / "export_v2.ndjson"),
        catalog=catalog,
        project="l",
        chunk_lines=2,
        max_failure_rate=1.0,
    )
    assert len(labelbox.batches) == 4  # 8 lines, 2 per batch, each its own commit
    assert Catalog(catalog).dataset("l__items").count() == 4
    # Malformed lines are quarantined with their line number.
    assert any(r["check"] == "source_format" for r in labelbox.record()["rejections"])

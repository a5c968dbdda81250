"""Data out: Label Studio import round trip, training tables pinned to a version."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from storage import Catalog
from storage.groundtruth import ensure_groundtruth
from tasks.exports import export_label_studio, export_training, read_provenance, select, to_label_studio
from tasks.label_studio import parse_export

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label-studio"
REGION = ("kind", "labels", "from_name", "to_name", "mask", "text", "span", "relation", "attributes")
GEOMETRY = ("box", "polygon", "keypoints")


def _ingest(catalog: Catalog, project: str, *names: str) -> None:
    groundtruth = ensure_groundtruth(catalog, project)
    for name in names:
        changes = parse_export((FIXTURES / name).read_bytes(), name=name).changes
        groundtruth.items.upsert(changes.items)
        groundtruth.annotations.upsert(changes.annotations)


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, abs_tol=1e-6)
    return a == b


def test_label_studio_export_import_export_preserves_regions(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    _ingest(catalog, "ls", "export_snapshot.json", "edge_cases.json", "export_ner.json")
    out = tmp_path / "import.json"
    export = export_label_studio(catalog, "ls", out)
    assert export.skipped == {"other": 2, "box": 1}  # rating and taxonomy results; a box without image size
    tasks = json.loads(out.read_text(encoding="utf-8"))
    reparsed = parse_export(json.dumps(tasks), name="import.json").changes.predictions.to_pylist()

    original = select(catalog, "ls").annotations.to_pylist()
    expected = {
        (r["item_id"], r["region_id"]): r
        for r in original
        if r["kind"] not in ("other", "empty") and (r["kind"] != "box" or r["box"] is not None)
    }
    found = {(r["item_id"], r["region_id"]): r for r in reparsed}
    assert found.keys() == expected.keys()
    for key, row in expected.items():
        again = found[key]
        assert {c: again[c] for c in REGION} == {c: row[c] for c in REGION}, key
        assert all(_close(again[c], row[c]) for c in GEOMETRY), key
        assert again["model_version"] == f"labelhouse:{row['submission_id']}"  # one prediction per submission
    rotated = found[("label-studio:11", "r1")]
    assert rotated["box"]["rotation"] == 90 and json.loads(rotated["attributes"])["flags"]["choices"] == [
        "occluded",
        "truncated",
    ]
    # Spans after emoji were written in UTF-16 units, as Label Studio counts; parsing maps them back.
    task13 = next(t for t in tasks if t["id"] == 13)
    spans = {r["id"]: r["value"] for p in task13["predictions"] for r in p["result"] if r["type"] == "labels"}
    assert any(v["start"] != found[("label-studio:13", k)]["span"]["start"] for k, v in spans.items())


def test_training_table_is_pinned_and_says_so(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    _ingest(catalog, "ls", "export_snapshot.json")
    annotations = catalog.dataset("ls__annotations")
    pinned = annotations.snapshot().id
    annotations.delete(keys=["label-studio:1/annotation:1/bb1"])  # a later edit the export must not see
    path = tmp_path / "train.parquet"
    hf_dir = tmp_path / "hf"
    result = export_training(
        catalog, "ls", path, version={"annotations": pinned}, where="id <> 'label-studio:3'", huggingface_dir=hf_dir
    )
    table = pq.read_table(path)
    assert result.rows == 2 and table["id"].to_pylist() == ["label-studio:1", "label-studio:2"]
    regions = {r["region_id"] for r in table["regions"].to_pylist()[0]}
    assert "bb1" in regions and "bb2" in regions  # the pinned version, not the head
    assert table["regions"].to_pylist()[1] == []  # task 2's only annotation is cancelled
    provenance = read_provenance(path)
    assert provenance["snapshots"]["annotations"] == pinned and provenance["where"] == "id <> 'label-studio:3'"
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_from_disk(str(hf_dir))
    assert json.loads(loaded.info.description)["snapshots"]["annotations"] == pinned
    assert loaded.num_rows == 2


def test_label_studio_tasks_for_other_sources(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    coco = Path(__file__).resolve().parents[2] / "fixtures" / "coco" / "coco_instances.json"
    from tasks.coco import parse_coco

    changes = parse_coco(coco.read_bytes(), name="coco.json").changes
    groundtruth = ensure_groundtruth(catalog, "mix")
    groundtruth.items.upsert(changes.items)
    groundtruth.annotations.upsert(changes.annotations)
    export = to_label_studio(select(catalog, "mix", where="source_id = '1'"), controls={"box": ("bbox", "image")})
    (task,) = export.tasks
    assert task["data"] == {"image": "cam0/000001.jpg"}
    results = [r for p in task["predictions"] for r in p["result"]]
    box = next(r for r in results if r["type"] == "rectanglelabels")
    assert box["from_name"] == "bbox" and box["value"]["rectanglelabels"] == ["señal_de_tráfico"]
    assert math.isclose(box["value"]["x"], 100 * 100 / 2560) and box["original_width"] == 2560
    assert sum(r["type"] == "polygonlabels" for r in results) == 3  # one result per polygon ring

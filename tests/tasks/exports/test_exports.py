"""Data out: Label Studio import round trip, brush masks to COCO and back, training tables pinned to a version."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from storage import Catalog
from storage.groundtruth import ensure_groundtruth
from tasks.coco import parse_coco
from tasks.exports import export_coco, export_label_studio, export_training, read_provenance, select, to_label_studio
from tasks.label_studio import parse_export
from tasks.label_studio.brush import decode_brush, encode_brush

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label-studio"
REGION = ("kind", "labels", "from_name", "to_name", "mask", "text", "span", "relation", "attributes")
GEOMETRY = ("box", "polygon", "keypoints")


def _ingest(catalog: Catalog, project: str, *names: str) -> None:
    for name in names:
        _ingest_export(catalog, project, (FIXTURES / name).read_bytes(), name)


def _ingest_export(catalog: Catalog, project: str, data: bytes | str, name: str) -> None:
    groundtruth = ensure_groundtruth(catalog, project)
    changes = parse_export(data, name=name).changes
    groundtruth.items.upsert(changes.items)
    groundtruth.annotations.upsert(changes.annotations)
    groundtruth.predictions.upsert(changes.predictions)


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


def _brush_masks() -> dict[str, np.ndarray]:
    """Masks by label (one region per label): odd and non-square sizes, 1x1, empty, full, long runs."""
    blob = np.zeros((9, 14), bool)
    blob[2:7, 3:12] = True
    ring = np.zeros((9, 14), bool)
    ring[1:8, 1:13] = True
    ring[3:6, 4:10] = False
    ring[0, 13] = True
    half = np.zeros((300, 301), bool)  # runs longer than one brush record holds
    half[:150] = True
    half[150:, ::7] = True
    return {
        "blob": blob,
        "ring": ring,
        "dot": np.ones((1, 1), bool),
        "nothing": np.zeros((40, 3), bool),
        "everything": np.ones((5, 2), bool),
        "half": half,
    }


def _brush_tasks(masks: dict[str, np.ndarray]) -> list[dict]:
    """A Label Studio JSON export: masks of the same size share a task (an image)."""
    by_size: dict[tuple[int, int], list[dict]] = {}
    for label, mask in masks.items():
        height, width = mask.shape
        by_size.setdefault((height, width), []).append(
            {
                "id": f"br-{label}",
                "from_name": "brush",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": encode_brush(mask), "brushlabels": [label]},
            }
        )
    return [
        {
            "id": task,
            "data": {"image": f"s3://bucket/{height}x{width}.png"},
            "annotations": [{"id": task * 10, "completed_by": 1, "result": results}],
        }
        for task, ((height, width), results) in enumerate(by_size.items(), start=101)
    ]


def test_brush_masks_export_to_coco_that_pycocotools_reads_back(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    coco_mask = pytest.importorskip("pycocotools.mask")
    masks = _brush_masks()
    catalog = Catalog(tmp_path / "lake")
    _ingest_export(catalog, "brush", json.dumps(_brush_tasks(masks)), "brush.json")
    _ingest(catalog, "brush", "export_json.json")  # its brush region is 128x72 on a 1280x720 image
    path = tmp_path / "coco.json"
    export = export_coco(catalog, "brush", path)
    assert export.skipped["mask of another size than its image"] == 1

    coco = coco_api.COCO(str(path))
    annotations = [a for a in coco.dataset["annotations"] if isinstance(a["segmentation"], dict)]
    found = {coco.cats[a["category_id"]]["name"]: a for a in annotations}
    assert found.keys() == masks.keys()
    for label, annotation in found.items():
        mask = masks[label]
        image = coco.imgs[annotation["image_id"]]
        assert (image["height"], image["width"]) == mask.shape
        assert annotation["segmentation"]["size"] == list(mask.shape)
        assert isinstance(annotation["segmentation"]["counts"], str)  # compressed RLE
        assert annotation["iscrowd"] == 0  # a brush region is one object, not a crowd
        assert np.array_equal(coco.annToMask(annotation), mask.astype(np.uint8)), label
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert annotation["bbox"] == coco_mask.toBbox(rle).tolist(), label
        assert annotation["area"] == int(mask.sum()), label


def test_brush_masks_round_trip_through_label_studio_bit_exact(tmp_path):
    masks = _brush_masks()
    source = _brush_tasks(masks)
    catalog = Catalog(tmp_path / "lake")
    _ingest_export(catalog, "brush", json.dumps(source), "brush.json")
    first = export_label_studio(catalog, "brush", tmp_path / "import.json")
    assert not first.skipped

    # Label Studio imports the predictions and exports them again; that export comes back in.
    exported_again = json.loads((tmp_path / "import.json").read_text(encoding="utf-8"))
    _ingest_export(catalog, "again", json.dumps(exported_again), "again.json")
    second = to_label_studio(select(catalog, "again"), predictions=True)

    source_rle = {
        r["value"]["brushlabels"][0]: r["value"]["rle"] for t in source for r in t["annotations"][0]["result"]
    }
    for tasks in (first.tasks, second.tasks):
        results = [r for t in tasks for p in t["predictions"] for r in p["result"]]
        assert sorted(r["value"]["brushlabels"][0] for r in results) == sorted(masks)
        for result in results:
            label = result["value"]["brushlabels"][0]
            assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
            assert (result["original_height"], result["original_width"]) == masks[label].shape
            decoded = decode_brush(result["value"]["rle"], result["original_width"], result["original_height"])
            assert np.array_equal(decoded, masks[label]), label
            assert result["value"]["rle"] == source_rle[label], label  # byte for byte, too
    stored = {r["labels"][0]: r["mask"] for r in select(catalog, "brush").annotations.to_pylist()}
    again = {r["labels"][0]: r["mask"] for r in select(catalog, "again").predictions.to_pylist()}
    assert again == stored


def test_coco_masks_go_to_label_studio_as_brush_regions(tmp_path):
    coco_mask = pytest.importorskip("pycocotools.mask")
    masks = _brush_masks()
    images, annotations, categories = [], [], []
    for index, (label, mask) in enumerate(masks.items(), start=1):
        height, width = mask.shape
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        crowd = index % 2 == 0  # crowd regions as uncompressed counts, the way COCO writes them
        counts = _uncompressed(mask) if crowd else rle["counts"].decode()
        segmentation = {"size": [height, width], "counts": counts}
        images.append({"id": index, "file_name": f"{label}.png", "width": width, "height": height})
        categories.append({"id": 100 + index, "name": label})
        annotations.append(
            {"id": 1000 + index, "image_id": index, "category_id": 100 + index, "segmentation": segmentation,
             "bbox": coco_mask.toBbox(rle).tolist(), "area": int(mask.sum()), "iscrowd": int(crowd)}
        )  # fmt: skip
    document = {"images": images, "annotations": annotations, "categories": categories}
    changes = parse_coco(json.dumps(document), name="masks.json").changes
    catalog = Catalog(tmp_path / "lake")
    groundtruth = ensure_groundtruth(catalog, "coco")
    groundtruth.items.upsert(changes.items)
    groundtruth.annotations.upsert(changes.annotations)
    export = to_label_studio(select(catalog, "coco"), controls={"mask": ("brush", "image")})
    results = [r for t in export.tasks for p in t["predictions"] for r in p["result"]]
    assert len(results) == len(masks) and not export.skipped
    for result in results:
        label = result["value"]["brushlabels"][0]
        assert result["from_name"] == "brush" and result["type"] == "brushlabels"
        decoded = decode_brush(result["value"]["rle"], result["original_width"], result["original_height"])
        assert np.array_equal(decoded, masks[label]), label


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed counts, built by hand: runs over the columns, starting with background."""
    counts, current, run = [], False, 0
    for value in mask.ravel(order="F"):
        if bool(value) != current:
            counts.append(run)
            current, run = bool(value), 0
        run += 1
    return [*counts, run]

"""COCO instances in and out: ids above 2^31, several polygons, crowd RLE, zero-area boxes, round trips."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from storage import Catalog
from storage.groundtruth import dataset_names, ensure_groundtruth
from tasks.coco import decode_counts, encode_counts, ingest_coco, mask_area, parse_coco
from tasks.errors import SourceError, UnrecognizedSourceError
from tasks.exports import export_coco
from tasks.quarantine import rejects_name

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "coco" / "coco_instances.json"
SOURCE = json.loads(FIXTURE.read_text(encoding="utf-8"))


def _parse(document: dict, **options):
    return parse_coco(json.dumps(document), name="instances.json", **options)


def _apply(catalog: Catalog, parsed) -> None:
    """Commit without the checks: the round trip must hold for every annotation, degenerate ones too."""
    groundtruth = ensure_groundtruth(catalog, "coco")
    groundtruth.items.upsert(parsed.changes.items)
    groundtruth.annotations.upsert(parsed.changes.annotations)


def _comparable(annotation: dict) -> dict:
    return {key: annotation[key] for key in ("image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")}


def test_fixture_maps_every_image_and_annotation():
    parsed = _parse(SOURCE)
    assert parsed.rejects == []
    items = {row["source_id"]: row for row in parsed.changes.items.to_pylist()}
    assert set(items) == {"1", "2", "900100000003", "4"}
    assert items["900100000003"]["id"] == "coco:900100000003"
    assert items["900100000003"]["uri"] == "crowd/plaza_ü_03.png"
    rows = {row["region_id"]: row for row in parsed.changes.annotations.to_pylist()}
    assert rows["2"]["kind"] == "polygon" and len(rows["2"]["polygon"]) == 2  # one object, two parts
    assert rows["3"]["kind"] == "box" and rows["3"]["labels"] == ["señal_de_tráfico"]  # bbox only
    crowd = rows["4"]
    assert crowd["kind"] == "mask" and crowd["mask"]["format"] == "coco-rle"
    assert (crowd["mask"]["width"], crowd["mask"]["height"]) == (32, 24)
    assert json.loads(crowd["attributes"])["iscrowd"] == 1
    assert rows["7"]["box"]["w"] == 0.0  # the zero-area box is kept as written
    assert rows["1"]["source_pointer"] == "/annotations/0"
    assert parsed.class_map == {"category": ["person", "car", "bicycle", "señal_de_tráfico"]}


def test_rle_codec_matches_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    np = pytest.importorskip("numpy")
    rng = random.Random(7)
    for _ in range(20):
        height, width = rng.randint(1, 40), rng.randint(1, 40)
        pixels = np.array([rng.random() > 0.6 for _ in range(height * width)]).reshape(height, width)
        bitmap = np.asfortranarray(pixels)
        encoded = mask_api.encode(bitmap.astype(np.uint8))
        text = encoded["counts"].decode("ascii")
        counts = decode_counts(text)
        assert encode_counts(counts) == text
        assert mask_area(counts) == int(mask_api.area(encoded)) == int(bitmap.sum())


def test_compressed_rle_and_bad_segmentations():
    document = copy.deepcopy(SOURCE)
    crowd = document["annotations"][3]
    crowd["segmentation"]["counts"] = encode_counts(crowd["segmentation"]["counts"])
    document["annotations"][4]["segmentation"] = [[1.0, 2.0, 3.0]]  # odd number of coordinates
    document["annotations"][5]["segmentation"] = {"size": [720, 1280], "counts": [5, 5]}  # covers 10 pixels
    parsed = _parse(document)
    masks = [row["mask"] for row in parsed.changes.annotations.to_pylist() if row["kind"] == "mask"]
    assert masks[0]["format"] == "coco-rle-compressed" and masks[0]["rle_string"] == crowd["segmentation"]["counts"]
    assert [r.source_pointer for r in parsed.rejects] == ["/annotations/4", "/annotations/5"]
    assert "at least 3 points" in parsed.rejects[0].reason and "covers" not in parsed.rejects[0].reason
    assert "cover 10 pixels" in parsed.rejects[1].reason


def test_not_coco_and_image_dir(tmp_path):
    with pytest.raises(UnrecognizedSourceError, match="not a COCO instances file"):
        _parse({"tasks": []})
    (tmp_path / "cam0").mkdir()
    (tmp_path / "cam0" / "000001.jpg").write_bytes(b"\xff\xd8\xffjpeg")
    parsed = _parse(SOURCE, image_dir=tmp_path)
    items = parsed.changes.items
    blobs = dict(zip(items["source_id"].to_pylist(), items["blob"].to_pylist(), strict=True))
    assert blobs["1"] == b"\xff\xd8\xffjpeg" and blobs["2"] is None  # a missing file is no blob, not an error
    assert parsed.idempotency_key != _parse(SOURCE).idempotency_key  # the images are part of the content
    escaping = copy.deepcopy(SOURCE)
    escaping["images"][0]["file_name"] = "../../etc/passwd"
    with pytest.raises(SourceError, match="outside the image directory"):
        _parse(escaping, image_dir=tmp_path)


def test_round_trip_preserves_every_annotation(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    _apply(catalog, _parse(SOURCE))
    out = tmp_path / "out.json"
    export = export_coco(catalog, "coco", out)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert export.skipped == {}
    exported = {a["id"]: _comparable(a) for a in document["annotations"]}
    assert exported == {a["id"]: _comparable(a) for a in SOURCE["annotations"]}
    assert {i["id"]: (i["file_name"], i["width"], i["height"]) for i in document["images"]} == {
        i["id"]: (i["file_name"], i["width"], i["height"]) for i in SOURCE["images"]
    }
    used = {a["category_id"] for a in SOURCE["annotations"]}
    assert document["categories"] == [c for c in SOURCE["categories"] if c["id"] in used]
    coco_api = pytest.importorskip("pycocotools.coco")
    loaded = coco_api.COCO(str(out))
    assert sorted(loaded.getAnnIds()) == list(range(1, 8))
    mask = loaded.annToMask(loaded.anns[4])
    assert int(mask.sum()) == 194 and mask.shape == (24, 32)


def test_checks_quarantine_the_zero_area_box_and_versions_pin_the_export(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    outcome = ingest_coco(catalog, "coco", FIXTURE, max_failure_rate=0.5)
    assert (outcome.tables["annotations"].good_rows, outcome.tables["annotations"].rejected_rows) == (6, 1)
    names = dataset_names("coco")
    (reject,) = catalog.dataset(rejects_name(names["annotations"])).read_all().to_pylist()
    assert reject["row_key"] == "coco:4/annotation:7/7" and "degenerate" in reject["reason"]
    first = catalog.dataset(names["annotations"]).snapshot().id

    changed = copy.deepcopy(SOURCE)
    del changed["annotations"][0]
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed), encoding="utf-8")
    ingest_coco(catalog, "coco", path, max_failure_rate=0.5)  # annotation 1 deleted at the source
    now = export_coco(catalog, "coco", tmp_path / "now.json").document
    before = export_coco(catalog, "coco", tmp_path / "before.json", version={"annotations": first}).document
    assert sorted(a["id"] for a in now["annotations"]) == [2, 3, 4, 5, 6]
    assert sorted(a["id"] for a in before["annotations"]) == [1, 2, 3, 4, 5, 6]
    assert json.loads(before["info"]["version"])["annotations"] == first
    crowd_only = export_coco(catalog, "coco", tmp_path / "crowd.json", where="width < 100").document
    assert [i["id"] for i in crowd_only["images"]] == [900100000003]
    assert sorted(a["id"] for a in crowd_only["annotations"]) == [4, 5]

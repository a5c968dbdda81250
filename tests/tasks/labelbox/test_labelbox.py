"""Labelbox export v2 NDJSON: streamed in chunks, malformed lines quarantined by line number."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from storage import Catalog
from storage.groundtruth import dataset_names
from tasks.exports import export_labelbox
from tasks.labelbox import ingest_export, iter_export, read_export_file
from tasks.quarantine import rejects_name

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "labelbox" / "export_v2.ndjson"


@pytest.fixture(scope="module")
def parsed():
    chunks = list(read_export_file(FIXTURE))
    assert len(chunks) == 1
    return chunks[0]


def _annotations(chunk) -> dict[str, dict]:
    return {row["id"]: row for row in chunk.changes.annotations.to_pylist()}


def test_malformed_lines_are_rejected_with_their_line_numbers(parsed):
    assert [(r.source_pointer, r.reason.split(":")[0]) for r in parsed.rejects] == [
        ("/4", "export_v2.ndjson, line 5"),
        ("/6", "export_v2.ndjson, line 7"),
        ("/7", "export_v2.ndjson, line 8"),
    ]
    assert "bounding_box/top: expected a number" in parsed.rejects[1].reason
    assert parsed.rejects[0].text.startswith('{"data_row": {"id": "cldr0009"')
    assert parsed.rejects[0].source_ref.startswith("export_v2.ndjson@sha256:")
    assert parsed.changes.items["id"].to_pylist() == [
        "labelbox:cldr0001",
        "labelbox:cldr0002",
        "labelbox:cldr0003",
        "labelbox:cldr0004",
    ]


def test_data_rows_metadata_attachments_and_nulls(parsed):
    items = {row["source_id"]: row for row in parsed.changes.items.to_pylist()}
    image = items["cldr0001"]
    assert (image["media_type"], image["width"], image["height"]) == ("image", 2560, 1707)
    assert json.loads(image["metadata"]) == {
        "tag": "night ☔",
        "split": "train",  # enum: the option's name
        "speed_kmh": 42.5,
        "captureDateTime": "2024-03-09T01:14:07+00:00",  # datetime in UTC
        "weather": ["rain", "fog"],  # multi-select enum
    }
    assert image["attachments"] == [{"name": "depth", "uri": "https://storage.example.com/fleet/cam0/000001.depth.png"}]
    data = json.loads(image["data"])
    assert data["global_key"] == "fleet/cam0/000001.jpg"
    assert data["embeddings"] == {"Image Embedding V2 (CLIP ViT-B/32)": [0.25, -0.5, 0.125, 1.0]}
    assert set(data["projects"]) == {"clproj1aaaa0000001", "clproj2bbbb0000002"}
    assert json.loads(image["raw"])["data_row"]["id"] == "cldr0001"  # the verbatim line
    text = items["cldr0002"]
    assert text["media_type"] == "text" and text["uri"] is None
    assert json.loads(text["metadata"]) == {"split": "cko8sc2yr0004h2dk69aj5x63"}  # enum given as an option id
    bare = items["cldr0003"]  # media_attributes, attachments null; no metadata, no projects
    assert (bare["width"], bare["metadata"], bare["attachments"], bare["media_type"]) == (None, None, [], "image")


def test_labels_of_several_projects_skips_and_benchmarks(parsed):
    rows = _annotations(parsed)
    by_label = {}
    for row in rows.values():
        by_label.setdefault(row["submission_id"], []).append(row)
    assert set(by_label) == {"label:cllabel0001", "label:cllabel0002", "label:cllabel0003", "label:cllabel0004"}
    (skipped,) = by_label["label:cllabel0003"]
    assert (skipped["status"], skipped["kind"], skipped["region_id"]) == ("cancelled", "empty", None)
    assert json.loads(skipped["raw"])["performance_details"]["skipped"] is True
    (benchmark,) = by_label["label:cllabel0002"]
    assert benchmark["status"] == "ground_truth"
    assert benchmark["source_pointer"] == "/0/projects/clproj2bbbb0000002/labels/0/annotations/objects/0"
    box = rows["labelbox:cldr0001/label:cllabel0001/clf0box"]
    assert box["box"] == {"x": 1690.0, "y": 977.0, "w": 225.0, "h": 330.0, "rotation": 0.0}
    assert (box["annotator"], box["lead_time_s"], box["image_width"]) == ("ana@example.com", 97.5, 2560)
    assert json.loads(box["attributes"]) == {"occluded": "yes", "occluded/how_much": "half", "colors": ["red", "white"]}
    line = rows["labelbox:cldr0001/label:cllabel0001/clf0line"]
    assert (line["kind"], line["result_type"], len(line["keypoints"])) == ("keypoints", "line", 3)
    assert rows["labelbox:cldr0001/label:cllabel0001/clf0mask"]["kind"] == "other"  # a mask URL: kept in raw
    radio = rows["labelbox:cldr0001/label:cllabel0001/clf0tod"]
    assert (radio["labels"], json.loads(radio["attributes"])) == (["night"], {"street_lights": ["on"]})
    assert rows["labelbox:cldr0001/label:cllabel0001/clf0qual"]["labels"] == ["blurry", "glare"]
    assert rows["labelbox:cldr0001/label:cllabel0001/clf0note"]["text"] == ["parked car — ünïcode ✓"]
    relation = rows["labelbox:cldr0001/label:cllabel0001/clf0rel"]["relation"]
    assert relation == {"from_id": "clf0box", "to_id": "clf0poly", "direction": "right"}


def test_text_entities_use_exclusive_code_point_ends(parsed):
    rows = _annotations(parsed)
    spans = {row["region_id"]: row["span"] for row in rows.values() if row["kind"] == "span"}
    text = "Ana a visité Zürich 🚲 avec Ben."
    assert {key: text[s["start"] : s["end"]] for key, s in spans.items()} == {
        "clf2per": "Ana",
        "clf2loc": "Zürich",
        "clf2per2": "Ben",
    }
    assert spans["clf2loc"]["text"] == "Zürich"  # no token in the export: taken from the text


def test_streaming_is_lazy_and_chunked():
    line = FIXTURE.read_text(encoding="utf-8").splitlines()[3]  # the bare data row
    consumed = 0

    def lines():
        nonlocal consumed
        for n in itertools.count():
            consumed += 1
            yield line.replace("cldr0003", f"row{n}")

    chunks = iter_export(lines(), chunk_lines=500)
    first, second = next(chunks), next(chunks)
    assert consumed == 1000  # nothing read ahead of the chunk being built
    assert (first.first_line, first.last_line, second.first_line) == (1, 500, 501)
    assert first.changes.items.num_rows == 500 and first.idempotency_key != second.idempotency_key


def test_ingest_quarantines_bad_lines_is_idempotent_and_syncs_deleted_labels(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    names = dataset_names("lb")
    [outcome] = ingest_export(catalog, "lb", FIXTURE)
    assert outcome.source_rejects == 3 and outcome.tables["annotations"].good_rows == 15
    rejects = catalog.dataset(rejects_name(names["items"])).read_all().to_pylist()
    assert sorted(r["source_pointer"] for r in rejects) == ["/4", "/6", "/7"]
    assert {r["check"] for r in rejects} == {"source_format"}
    snapshots = {name: catalog.dataset(name).versions().num_rows for name in names.values()}
    ingest_export(catalog, "lb", FIXTURE)
    assert {name: catalog.dataset(name).versions().num_rows for name in names.values()} == snapshots

    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["projects"]["clproj2bbbb0000002"]["labels"].pop(0)  # the benchmark label deleted in Labelbox
    changed = tmp_path / "changed.ndjson"
    changed.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    ingest_export(catalog, "lb", changed)
    ids = set(catalog.dataset(names["annotations"]).read_all(columns=["id"])["id"].to_pylist())
    assert "labelbox:cldr0001/label:cllabel0002/clf1box" not in ids
    assert "labelbox:cldr0002/label:cllabel0004/clf2per" in ids  # other data rows untouched


def test_labelbox_import_ndjson(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    ingest_export(catalog, "lb", FIXTURE)
    out = tmp_path / "import.ndjson"
    export = export_labelbox(catalog, "lb", out)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert export.skipped == {"other": 1}  # the mask (cancelled labels are not exported)
    by_name = {}
    for line in lines:
        by_name.setdefault(line["name"], []).append(line)
    car = next(line for line in by_name["car"] if line["dataRow"] == {"id": "cldr0001"} and "classifications" in line)
    assert car["bbox"] == {"top": 977.0, "left": 1690.0, "height": 330.0, "width": 225.0}
    assert car["classifications"] == [
        {"name": "colors", "answer": [{"name": "red"}, {"name": "white"}]},
        {"name": "occluded", "answer": {"name": "yes"}},
    ]
    assert by_name["lane"][0]["line"][1] == {"x": 1260.5, "y": 1200.0}
    assert by_name["head"][0]["point"] == {"x": 768.0, "y": 716.9}
    assert by_name["time_of_day"][0]["answer"] == {"name": "night"}
    assert by_name["quality"][0]["answer"] == [{"name": "blurry"}, {"name": "glare"}]
    assert by_name["note"][0]["answer"] == "parked car — ünïcode ✓"
    assert sorted(line["location"]["start"] for line in by_name["person"]) == [0, 27]
    assert by_name["place"][0]["location"] == {"start": 13, "end": 18}  # inclusive again
    uuids = {line["uuid"] for line in lines}
    relation = by_name["on_top_of"][0]["relationship"]
    assert relation["source"] in uuids and relation["target"] in uuids and relation["type"] == "unidirectional"
    assert export_labelbox(catalog, "lb", tmp_path / "again.ndjson").lines == export.lines  # stable uuids

"""Every captured Label Studio fixture: counts, pixels, raw round trip, variants agreeing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.groundtruth import ANNOTATIONS_SCHEMA, ITEMS_SCHEMA, PREDICTIONS_SCHEMA
from tasks.coco.rle import decode_counts
from tasks.label_studio import ExportVariant, parse_export

LS_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label-studio"


def _fragment(document: object, pointer: str) -> object:
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]  # type: ignore[index]
    return document


@pytest.mark.parametrize(
    ("name", "variant", "items", "annotations", "predictions"),
    [
        ("export_json.json", ExportVariant.JSON, 3, 10, 1),
        ("export_snapshot.json", ExportVariant.SNAPSHOT, 3, 10, 1),
        ("export_ner.json", ExportVariant.JSON, 1, 4, 0),
        ("export_json_min.json", ExportVariant.JSON_MIN, 2, 8, 0),
        ("edge_cases.json", ExportVariant.SNAPSHOT, 4, 13, 3),
    ],
)
def test_fixture_counts_schema_and_raw_round_trip(
    ls_fixture, ls_config, name, variant, items, annotations, predictions
):
    parsed = ls_fixture(name, config=ls_config)
    changes = parsed.changes
    assert parsed.variant is variant
    assert changes.items.schema.equals(ITEMS_SCHEMA)
    assert changes.annotations.schema.equals(ANNOTATIONS_SCHEMA)
    assert changes.predictions.schema.equals(PREDICTIONS_SCHEMA)
    assert (changes.items.num_rows, changes.annotations.num_rows, changes.predictions.num_rows) == (
        items,
        annotations,
        predictions,
    )
    source = json.loads((LS_FIXTURES / name).read_text(encoding="utf-8"))
    item_raws = [json.loads(raw) for raw in changes.items["raw"].to_pylist()]
    if variant is ExportVariant.JSON_MIN:  # an item keeps all the JSON_MIN rows of its task
        assert sorted((row for rows in item_raws for row in rows), key=source.index) == source
    else:  # an item keeps its whole task: the export is rebuilt from the items alone
        assert item_raws == source
    for table in (changes.annotations, changes.predictions):
        for row in table.select(["raw", "source_pointer", "kind"]).to_pylist():
            if row["kind"] != "empty":
                assert json.loads(row["raw"])[0] == _fragment(source, row["source_pointer"])
    for table in (changes.items, changes.annotations, changes.predictions):
        assert all(ref.startswith(f"{name}@sha256:") for ref in table["source_ref"].to_pylist())
        assert table["id"].unique().to_pylist() == table["id"].to_pylist()


def test_json_and_snapshot_exports_give_the_same_rows(ls_fixture):
    easy, snapshot = ls_fixture("export_json.json"), ls_fixture("export_snapshot.json")
    content = [c for c in ANNOTATIONS_SCHEMA.names if c not in {"annotator_email", "source_ref", "source_pointer"}]
    assert easy.changes.annotations.select(content).equals(snapshot.changes.annotations.select(content))
    # The easy export lists prediction ids; they resolve through the prediction the annotation embeds.
    prediction_content = [c for c in PREDICTIONS_SCHEMA.names if c not in {"source_ref", "source_pointer"}]
    assert easy.changes.predictions.select(prediction_content).equals(
        snapshot.changes.predictions.select(prediction_content)
    )


def test_image_geometry_is_in_pixels(ls_fixture):
    rows = {r["id"]: r for r in ls_fixture("export_json.json").changes.annotations.to_pylist()}
    box = rows["label-studio:1/annotation:1/bb1"]
    assert box["box"] == {"x": 160.0, "y": 288.0, "w": 256.0, "h": 180.0, "rotation": 0.0}
    assert (box["image_width"], box["image_height"], box["labels"]) == (1280, 720, ["car"])
    polygon = rows["label-studio:1/annotation:1/pg1"]["polygon"]
    assert polygon == [[{"x": 0.0, "y": 576.0}, {"x": 640.0, "y": 432.0}, {"x": 1280.0, "y": 576.0},
                        {"x": 1280.0, "y": 720.0}, {"x": 0.0, "y": 720.0}]]  # fmt: skip
    assert rows["label-studio:1/annotation:1/kp1"]["keypoints"] == [{"x": 384.0, "y": pytest.approx(302.4)}]
    mask = rows["label-studio:1/annotation:1/br1"]["mask"]
    assert (mask["format"], mask["width"], mask["height"], mask["rle"]) == ("coco-rle-compressed", 128, 72, None)
    assert decode_counts(mask["rle_string"]) == [0, *[20, 52] * 128]  # the top 20 rows ("sky"), column by column


def test_statuses_annotators_and_drafts(ls_fixture):
    rows = ls_fixture("export_snapshot.json").changes.annotations.to_pylist()
    by_submission = {r["submission_id"]: r for r in rows}
    assert by_submission["annotation:2"]["annotator"] == "2"
    assert by_submission["annotation:2"]["annotator_email"] == "annotator2@example.com"
    cancelled = by_submission["annotation:3"]
    assert (cancelled["status"], cancelled["kind"], cancelled["region_id"]) == ("cancelled", "empty", None)
    assert cancelled["id"] == "label-studio:2/annotation:3"
    draft = by_submission["draft:1"]
    assert (draft["status"], draft["annotator"], draft["annotator_email"]) == ("draft", "1", "admin@example.com")
    assert by_submission["annotation:1"]["lead_time_s"] == 42.5
    assert by_submission["annotation:1"]["created_at"].isoformat() == "2026-11-21T18:09:10.386410+00:00"


def test_ner_spans_are_code_point_offsets(ls_fixture):
    parsed = ls_fixture("export_ner.json")
    text = json.loads(parsed.changes.items["data"][0].as_py())["text"]
    spans = parsed.changes.annotations["span"].to_pylist()
    assert [text[s["start"] : s["end"]] for s in spans] == [s["text"] for s in spans]
    assert parsed.changes.items["media_type"].to_pylist() == ["text"]
    assert parsed.changes.items["uri"].to_pylist() == [None]


def test_json_min_uses_the_config_to_tell_data_from_labels(ls_fixture, ls_config):
    changes = ls_fixture("export_json_min.json", config=ls_config).changes
    assert json.loads(changes.items["data"][0].as_py()) == {"image": "https://example.com/frames/cam0_000001.jpg"}
    labels = {(r["submission_id"], r["kind"], tuple(r["labels"] or r["text"])) for r in changes.annotations.to_pylist()}
    assert ("annotation:1", "classification", ("sunny",)) in labels
    assert ("annotation:1", "text", ("parked car, partially occluded — ünïcode ✓",)) in labels
    assert ("annotation:4", "classification", ("fog",)) in labels


def test_reingesting_is_keyed_by_content(ls_fixture, ls_config):
    first = ls_fixture("export_json.json")
    reformatted = json.dumps(json.loads((LS_FIXTURES / "export_json.json").read_text()), indent=None)
    again = parse_export(reformatted, name="renamed.json")
    assert again.idempotency_key == first.idempotency_key
    assert again.changes.annotations["id"].equals(first.changes.annotations["id"])
    assert ls_fixture("export_json.json", config=ls_config).idempotency_key != first.idempotency_key
    assert ls_fixture("export_json.json", whole_project=False).idempotency_key != first.idempotency_key
    assert first.idempotency_key != ls_fixture("export_snapshot.json").idempotency_key

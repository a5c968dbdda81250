"""One test per Label Studio result type, and the edge cases of `edge_cases.json`."""

from __future__ import annotations

import json

import pytest

IMAGE = {"original_width": 400, "original_height": 200, "image_rotation": 0}


def _result(rtype: str, value: dict, rid: str | None = "r1", from_name: str = "ctl", **extra) -> dict:
    result = {"from_name": from_name, "to_name": "image", "type": rtype, "value": value, **extra}
    return result if rid is None else {"id": rid, **result}


def test_rectanglelabels_to_pixels_keeping_rotation(parse_results):
    value = {"x": 25, "y": 50, "width": 10, "height": 20, "rotation": 30, "rectanglelabels": ["car"]}
    row = parse_results([_result("rectanglelabels", value, **IMAGE)]).to_pylist()[0]
    assert (row["kind"], row["labels"], row["result_type"]) == ("box", ["car"], "rectanglelabels")
    assert row["box"] == {"x": 100.0, "y": 100.0, "w": 40.0, "h": 40.0, "rotation": 30.0}


def test_polygonlabels_to_pixel_ring(parse_results):
    value = {"points": [[0, 0], [50, 0], [50, 100]], "closed": True, "polygonlabels": ["road"]}
    row = parse_results([_result("polygonlabels", value, **IMAGE)]).to_pylist()[0]
    assert row["kind"] == "polygon"
    assert row["polygon"] == [[{"x": 0.0, "y": 0.0}, {"x": 200.0, "y": 0.0}, {"x": 200.0, "y": 200.0}]]


def test_keypointlabels_to_pixel_point(parse_results):
    value = {"x": 50, "y": 25, "width": 0.5, "keypointlabels": ["head"]}
    row = parse_results([_result("keypointlabels", value, **IMAGE)]).to_pylist()[0]
    assert (row["kind"], row["keypoints"], row["labels"]) == ("keypoints", [{"x": 200.0, "y": 50.0}], ["head"])


def test_brushlabels_keep_the_rle(parse_results):
    value = {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["sky"]}
    row = parse_results([_result("brushlabels", value, **IMAGE)]).to_pylist()[0]
    assert row["kind"] == "mask"
    assert row["mask"] == {
        "format": "label-studio-rle",
        "width": 400,
        "height": 200,
        "rle": [1, 2, 3],
        "rle_string": None,
    }


def test_choices_single_and_multiple(parse_results):
    rows = parse_results(
        [
            _result("choices", {"choices": ["sunny"]}, "c1"),
            _result("choices", {"choices": ["blurry", "occluded"]}, "c2"),
        ]
    ).to_pylist()
    assert [(r["kind"], r["labels"]) for r in rows] == [
        ("classification", ["sunny"]),
        ("classification", ["blurry", "occluded"]),
    ]


def test_global_textarea_is_a_text_row(parse_results):
    row = parse_results([_result("textarea", {"text": ["first ✓", "second 🍕"]}, "t1")]).to_pylist()[0]
    assert (row["kind"], row["text"], row["labels"]) == ("text", ["first ✓", "second 🍕"], None)


def test_per_region_textarea_and_choices_fold_into_the_region(parse_results):
    box = _result("rectanglelabels", {"x": 0, "y": 0, "width": 1, "height": 1, "rectanglelabels": ["car"]}, **IMAGE)
    note = _result("textarea", {"text": ["plate ABC"]}, from_name="note")
    flags = _result("choices", {"choices": ["occluded"]}, from_name="flags")
    rows = parse_results([box, note, flags]).to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert (row["kind"], row["labels"], row["text"], row["result_positions"]) == (
        "box",
        ["car"],
        ["plate ABC"],
        [0, 1, 2],
    )
    assert json.loads(row["attributes"]) == {"note": {"text": ["plate ABC"]}, "flags": {"choices": ["occluded"]}}
    assert json.loads(row["raw"]) == [box, note, flags]


def test_labels_control_beside_a_plain_rectangle_labels_the_box(parse_results):
    rect = _result("rectangle", {"x": 0, "y": 0, "width": 10, "height": 10}, **IMAGE)
    labels = _result("labels", {"labels": ["car"]}, from_name="lbl")
    row = parse_results([labels, rect]).to_pylist()[0]
    assert (row["kind"], row["labels"], row["box"]["w"]) == ("box", ["car"], 40.0)


def test_ner_labels_with_utf16_offsets_become_code_points(parse_results):
    text = "🍕🍕 in Zürich"
    # Label Studio's frontend counts UTF-16 code units: each pizza is two.
    value = {"start": 8, "end": 14, "text": "Zürich", "labels": ["LOC"]}
    row = parse_results([_result("labels", value, to_name="text")], data={"text": text}).to_pylist()[0]
    assert row["kind"] == "span"
    assert row["span"] == {"start": 6, "end": 12, "text": "Zürich"}
    assert text[6:12] == "Zürich"


def test_hypertext_span_uses_global_offsets(parse_results):
    value = {"start": "/p[1]/text()[1]", "end": "/p[1]/text()[1]", "startOffset": 0, "endOffset": 3,
             "globalOffsets": {"start": 4, "end": 7}, "text": "abc", "hypertextlabels": ["X"]}  # fmt: skip
    row = parse_results([_result("hypertextlabels", value)], data={"html": "<p>xyz abc</p>"}).to_pylist()[0]
    assert (row["kind"], row["span"], row["labels"]) == ("span", {"start": 4, "end": 7, "text": "abc"}, ["X"])


def test_relations_reference_regions(parse_results):
    spans = [
        _result("labels", {"start": 0, "end": 1, "text": "a", "labels": ["PER"]}, "a"),
        _result("labels", {"start": 2, "end": 3, "text": "b", "labels": ["LOC"]}, "b"),
    ]
    relation = {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right", "labels": ["located_in"]}
    row = parse_results([*spans, relation], data={"text": "a b"}).to_pylist()[2]
    assert (row["kind"], row["region_id"], row["labels"]) == ("relation", "relation:a:b", ["located_in"])
    assert row["relation"] == {"from_id": "a", "to_id": "b", "direction": "right"}


def test_unknown_result_types_are_kept_raw(parse_results):
    rating = _result("rating", {"rating": 4}, "q1")
    video = _result("videorectangle", {"sequence": [{"frame": 1, "x": 1}], "labels": ["car"]}, "v1")
    rows = parse_results([rating, video]).to_pylist()
    assert [(r["kind"], r["result_type"], r["labels"]) for r in rows] == [
        ("other", "rating", None),
        ("other", "videorectangle", None),
    ]
    assert [json.loads(r["raw"]) for r in rows] == [[rating], [video]]


def test_results_without_ids_get_positional_region_ids(parse_results):
    value = {"x": 0, "y": 0, "width": 1, "height": 1, "rectanglelabels": ["car"]}
    rows = parse_results([_result("rectanglelabels", value, None, **IMAGE)] * 2).to_pylist()
    assert [r["id"] for r in rows] == ["label-studio:1/annotation:1/#0", "label-studio:1/annotation:1/#1"]


def test_duplicate_region_ids_stay_distinct_rows(parse_results):
    rows = parse_results(
        [_result("choices", {"choices": ["a"]}, "x"), _result("textarea", {"text": ["t"]}, "x", from_name="n")]
    )
    assert rows.num_rows == 1  # same id: the textarea describes the choice's region
    rel = {"from_id": "x", "to_id": "x", "type": "relation"}
    assert parse_results([rel, rel])["region_id"].to_pylist() == ["relation:x:x", "relation:x:x#1"]


@pytest.fixture(scope="module")
def edge(ls_fixture, ls_config):
    changes = ls_fixture("edge_cases.json", config=ls_config).changes
    return {
        "items": {r["id"]: r for r in changes.items.to_pylist()},
        "annotations": {r["id"]: r for r in changes.annotations.to_pylist()},
        "predictions": {r["id"]: r for r in changes.predictions.to_pylist()},
    }


def test_task_without_annotations_and_sparse_data_columns(edge):
    item = edge["items"]["label-studio:10"]
    assert (item["media_type"], item["uri"], item["width"], item["metadata"]) == (
        "image",
        "s3://bucket/frames/a.png",
        None,
        None,
    )
    assert json.loads(item["data"])["extra_column"] == "only on this task"
    assert "extra_column" not in json.loads(edge["items"]["label-studio:11"]["data"])
    assert not [a for a in edge["annotations"].values() if a["item_id"] == "label-studio:10"]


def test_attachments_and_local_uploads(edge):
    item = edge["items"]["label-studio:11"]
    assert item["uri"] == "/data/upload/1/b.jpg"
    assert item["attachments"] == [{"name": "thumbnail", "uri": "https://cdn.example.com/b_small.jpg"}]
    assert (item["width"], item["height"]) == (200, 100)


def test_several_annotators_ground_truth_empty_and_cancelled(edge):
    rows = edge["annotations"]
    box = rows["label-studio:11/annotation:20/r1"]
    assert (box["status"], box["annotator"], box["box"]["rotation"]) == ("ground_truth", "5", 90.0)
    assert box["text"] == ["plate ABC-123 ✓"]
    assert box["created_at"].isoformat() == "2026-01-02T01:04:05+00:00"
    empty = rows["label-studio:11/annotation:21"]
    assert (empty["status"], empty["kind"], empty["annotator"]) == ("submitted", "empty", "6")
    cancelled = rows["label-studio:11/annotation:22/c1"]
    assert (cancelled["status"], cancelled["labels"]) == ("cancelled", ["rain"])
    assert rows["label-studio:11/annotation:20/nosize"]["box"] is None  # no image size: no pixels
    assert rows["label-studio:11/annotation:20/rt1"]["kind"] == "other"


def test_draft_author_and_empty_draft(edge):
    draft = edge["annotations"]["label-studio:11/draft:8"]
    assert (draft["status"], draft["annotator"], draft["annotator_email"], draft["kind"]) == (
        "draft",
        "9",
        "zoë@example.com",
        "empty",
    )


def test_prediction_objects_scores_and_model_versions(edge):
    rows = edge["predictions"]
    assert rows["label-studio:11/prediction:40/#0"]["score"] == 0.9  # the prediction's score
    assert rows["label-studio:11/prediction:40/#1"]["score"] == 0.4  # the region's own
    assert rows["label-studio:11/prediction:40/#1"]["box"]["x"] == 40.0
    assert rows["label-studio:11/prediction:41"]["model_version"] == "3"
    assert {r["status"] for r in rows.values()} == {"prediction"}


def test_null_fields_everywhere(edge):
    assert edge["items"]["label-studio:12"]["media_type"] == "text"
    assert not [a for a in edge["annotations"].values() if a["item_id"] == "label-studio:12"]
    empty = edge["annotations"]["label-studio:13/annotation:30"]
    assert (empty["kind"], empty["status"], empty["annotator"], empty["created_at"]) == (
        "empty",
        "submitted",
        None,
        None,
    )


def test_emoji_text_spans_relation_and_taxonomy(edge):
    text = json.loads(edge["items"]["label-studio:13"]["data"])["text"]
    spans = {k: r for k, r in edge["annotations"].items() if r["kind"] == "span"}
    assert {r["span"]["text"] for r in spans.values()} == {"Zoë", "Zürich", "ACME"}
    assert all(text[r["span"]["start"] : r["span"]["end"]] == r["span"]["text"] for r in spans.values())
    relation = edge["annotations"]["label-studio:13/annotation:31/relation:s1:s2"]
    assert relation["labels"] == ["located_in"]
    taxonomy = edge["annotations"]["label-studio:13/annotation:31/tx"]
    assert (taxonomy["kind"], taxonomy["labels"]) == ("other", None)


def test_unknown_label_types_keep_string_labels_only(parse_results):
    rows = parse_results(
        [
            _result("timeserieslabels", {"start": 1, "end": 2, "timeserieslabels": ["Run"]}, "t1"),
            _result("ellipselabels", {"ellipselabels": [{"odd": 1}]}, "e1"),
        ]
    ).to_pylist()
    assert [(r["kind"], r["labels"]) for r in rows] == [("other", ["Run"]), ("other", None)]

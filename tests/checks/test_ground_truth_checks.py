"""Checks of canonical batches: GE suites, domain checks, and the report they make."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from checks import check_batch
from checks.geometry import geometry_outside_image, malformed_geometry
from checks.keys import key_problems
from checks.labels import labels_outside_class_map
from checks.references import dangling_relations, missing_items
from storage.groundtruth import ANNOTATIONS_SCHEMA, ITEMS_SCHEMA, PREDICTIONS_SCHEMA

BOX = {"x": 10.0, "y": 10.0, "w": 20.0, "h": 20.0, "rotation": 0.0}
CLASS_MAP = {"bbox": {"car", "pedestrian"}, "weather": {"sunny"}, "options": None}


def region(id: str, **overrides: Any) -> dict[str, Any]:
    row = {
        "id": id,
        "item_id": "ls:1",
        "submission_id": "annotation:1",
        "region_id": id,
        "status": "submitted",
        "kind": "box",
        "from_name": "bbox",
        "labels": ["car"],
        "image_width": 100,
        "image_height": 50,
        "box": BOX,
        "lead_time_s": 1.0,
        "source": "label-studio",
        "source_ref": "export.json",
        "source_pointer": f"/0/annotations/0/result/{id}",
        "raw": "[]",
    }
    return {**row, **overrides}


def table(*rows: dict[str, Any], schema: pa.Schema = ANNOTATIONS_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)


def test_a_clean_batch_passes_every_check():
    report = check_batch("annotations", table(region("a"), region("b")), item_ids=["ls:1"], class_map=CLASS_MAP)
    assert report.passed and report.failing_rows == () and report.failure_rate == 0.0
    names = {r.name for r in report.results}
    assert {"unique_primary_key", "geometry_well_formed", "geometry_inside_image", "item_exists"} <= names
    assert {"label_in_class_map", "relations_resolve", "expect_column_values_to_be_in_set(kind)"} <= names
    assert report.summary_table().num_rows == len(report.results)


def test_report_lists_each_failing_row_with_key_and_reasons():
    batch = table(
        region("ok"),
        region("bad", labels=["truck"], box={**BOX, "w": 0.0}, status="approved"),
        region("orphan", item_id="ls:404"),
    )
    report = check_batch("annotations", batch, item_ids=["ls:1"], class_map=CLASS_MAP)
    assert not report.passed
    assert [(f.row, f.key) for f in report.failing_rows] == [(1, "bad"), (2, "orphan")]
    bad = report.failing_rows[0]
    assert set(bad.checks) == {
        "label_in_class_map",
        "geometry_well_formed",
        "expect_column_values_to_be_in_set(status)",
    }
    assert any("'truck'" in reason for _, reason in bad.reasons)
    assert report.result("item_exists").failing_count == 1
    assert report.failure_rate == pytest.approx(2 / 3)


def test_keys_must_be_unique_and_present():
    batch = table(region("a"), region("a"), region("b"))
    duplicate = "primary key 'a' appears 2 times in the batch"
    assert key_problems(batch, ["id"]) == {0: duplicate, 1: duplicate}
    compound = pa.table({"k1": [1, 1, None], "k2": ["x", "y", "z"]})
    assert list(key_problems(compound, ["k1", "k2"])) == [2]


def test_labels_against_the_class_map():
    batch = table(
        region("ok"),
        region("unknown_label", labels=["truck"]),
        region("unknown_control", from_name="renamed", labels=["car"]),
        region("dynamic", from_name="options", labels=["anything"]),
        region("relation", kind="relation", from_name=None, labels=["works_for"]),
        region("text", kind="text", from_name="note", labels=None),
    )
    failing = labels_outside_class_map(batch, CLASS_MAP, relation_labels={"located_in"})
    assert sorted(failing) == [1, 2, 4]
    assert "not in the labeling config" in failing[2]


def test_malformed_geometry():
    batch = table(
        region("flat", box={**BOX, "h": 0.0}),
        region("nobox", box=None),
        region("line", kind="polygon", box=None, polygon=[[{"x": 0, "y": 0}, {"x": 1, "y": 1}, {"x": 2, "y": 2}]]),
        region("two", kind="polygon", box=None, polygon=[[{"x": 0, "y": 0}, {"x": 1, "y": 1}]]),
        region("tri", kind="polygon", box=None, polygon=[[{"x": 0, "y": 0}, {"x": 9, "y": 0}, {"x": 0, "y": 9}]]),
        region("span", kind="span", box=None, span={"start": 5, "end": 5, "text": ""}),
        region("mask", kind="mask", box=None, mask={"format": "label-studio-rle", "width": 1, "height": 1}),
        region("kp", kind="keypoints", box=None, keypoints=[]),
    )
    failing = malformed_geometry(batch)
    assert sorted(failing) == [0, 1, 2, 3, 5, 6, 7]
    assert "without a box" in failing[1]


def test_geometry_inside_the_image_with_rotation():
    batch = table(
        region("inside"),
        region("edge", box={"x": 80.0, "y": 30.0, "w": 20.0, "h": 20.0, "rotation": 0.0}),
        region("overflow", box={"x": 90.0, "y": 10.0, "w": 20.0, "h": 10.0, "rotation": 0.0}),
        # Rotating 90 degrees clockwise around the top-left corner swings the box to the left of x=10.
        region("rotated", box={"x": 10.0, "y": 10.0, "w": 5.0, "h": 20.0, "rotation": 90.0}),
        region("poly", kind="polygon", box=None, polygon=[[{"x": 0, "y": 0}, {"x": 101, "y": 0}, {"x": 0, "y": 9}]]),
        region("kp", kind="keypoints", box=None, keypoints=[{"x": -3.0, "y": 1.0}]),
        region("unsized", image_width=None, image_height=None),
    )
    failing = geometry_outside_image(batch)
    assert sorted(failing) == [2, 3, 4, 5]
    assert "outside the 100x50 image" in failing[2]


def test_references_to_items_and_regions():
    batch = table(
        region("a"),
        region("rel", kind="relation", box=None, relation={"from_id": "a", "to_id": "gone", "direction": "right"}),
        region("other", item_id="ls:2"),
    )
    assert dangling_relations(batch) == {1: "relation points at region(s) ['gone'] that annotation:1 does not have"}
    assert list(missing_items(batch, {"ls:1"})) == [2]


def test_prediction_scores_and_statuses():
    rows = [
        region("p1", status="prediction", score=0.5),
        region("p2", status="prediction", score=1.5),
        region("p3", status="submitted", score=None),
    ]
    report = check_batch("predictions", table(*rows, schema=PREDICTIONS_SCHEMA))
    assert report.result("expect_column_values_to_be_between(score)").failing_count == 1
    assert [f.key for f in report.failing_rows] == ["p2", "p3"]


def test_items_suite_and_whole_batch_failures():
    item = {"id": "ls:1", "source_id": "1", "media_type": "image", "width": 0, "source": "s", "source_ref": "r",
            "source_pointer": "/0", "raw": "{}"}  # fmt: skip
    report = check_batch("items", table(item, {**item, "id": "ls:2", "media_type": "hologram"}, schema=ITEMS_SCHEMA))
    assert [f.key for f in report.failing_rows] == ["ls:1", "ls:2"]
    # A batch without a required column fails that expectation on every row.
    report = check_batch("items", table(item, schema=ITEMS_SCHEMA).drop_columns(["media_type"]))
    assert report.failure_rate == 1.0

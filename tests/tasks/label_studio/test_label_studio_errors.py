"""Inputs that are not usable exports fail with documented errors that say where and what to fix."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.errors import StorageError
from tasks.errors import SourceError, SourceFormatError, TruncatedSourceError, UnrecognizedSourceError
from tasks.label_studio import parse_export

EXPORT = (Path(__file__).resolve().parents[2] / "fixtures" / "label-studio" / "export_json.json").read_bytes()


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", TruncatedSourceError, "empty"),
        (EXPORT[: len(EXPORT) // 2], TruncatedSourceError, "truncated"),
        (b'[{"id": 1, "data": {"text": "unterminated', TruncatedSourceError, "truncated"),
        (b"[1, 2]]", SourceFormatError, "invalid JSON at line 1"),
        (b"\xff\xfe[]", SourceFormatError, "not UTF-8"),
        (b'{"images": [], "annotations": []}', UnrecognizedSourceError, "COCO"),
        (b'{"action": "TASKS_CREATED"}', UnrecognizedSourceError, "webhook"),
        (b'"hello"', UnrecognizedSourceError, "a JSON string"),
        (b'[{"id": 1, "data": {}}, "x"]', UnrecognizedSourceError, "element 1 is a string"),
        (b'[{"name": "no id"}]', UnrecognizedSourceError, "element 0 is an object without 'id'"),
        (b'[{"id": 1, "data": {}}, {"id": 2, "image": "a"}]', UnrecognizedSourceError, "mixes export formats"),
        (b'[{"id": 1, "image": "a.jpg", "annotation_id": 3}]', SourceFormatError, "labeling config"),
    ],
)
def test_unusable_input_is_named_and_explained(content, error, message):
    with pytest.raises(error, match=message) as raised:
        parse_export(content, name="upload.json")
    assert str(raised.value).startswith("upload.json")
    assert isinstance(raised.value, SourceError) and isinstance(raised.value, StorageError)


def test_a_bad_field_names_the_task_and_the_pointer():
    task = {"id": 7, "data": {}, "annotations": [{"id": 1, "result": [
        {"id": "a", "type": "rectanglelabels", "original_width": 10, "original_height": 10,
         "value": {"x": "left", "y": 0, "width": 1, "height": 1}}
    ]}]}  # fmt: skip
    with pytest.raises(SourceFormatError) as raised:
        parse_export(json.dumps([task]), name="e.json")
    message = str(raised.value)
    assert "e.json, task 7" in message
    assert "/0/annotations/0/result/0/value/x" in message
    assert "expected a number" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("original_width", -5, "a positive image size"),
        ("original_width", 2**40, "a positive image size"),
        ("original_width", 10**30, "an integer"),
        ("created_at", "yesterday", "an ISO 8601 timestamp"),
    ],
)
def test_out_of_range_values_are_format_errors(field, value, expected):
    result = {"id": "a", "type": "rectanglelabels", "original_width": 10, "original_height": 10, "value": {}}
    annotation = {"id": 1, "result": [result]}
    (result if field.startswith("original") else annotation)[field] = value
    with pytest.raises(SourceFormatError, match=expected):
        parse_export(json.dumps([{"id": 1, "data": {}, "annotations": [annotation]}]))


def test_every_truncation_of_an_export_is_reported_as_truncated():
    for end in range(1, len(EXPORT) - 1, 97):
        with pytest.raises(TruncatedSourceError):
            parse_export(EXPORT[:end])


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_keys = st.sampled_from(
    ["id", "data", "annotations", "result", "value", "type", "predictions", "drafts", "completed_by", "x",
     "y", "width", "height", "points", "rle", "start", "end", "text", "labels", "original_width", "from_id",
     "original_height", "rectanglelabels", "polygonlabels", "choices", "from_name", "to_name", "score",
     "created_at", "prediction", "relation", "rotation", "globalOffsets", "meta", "model_version"]
)  # fmt: skip
_types = st.sampled_from(["rectanglelabels", "polygonlabels", "keypointlabels", "brushlabels", "choices",
                          "textarea", "labels", "relation", "rating", "hypertextlabels"])  # fmt: skip
_json = st.recursive(
    _scalars | _types,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=st.lists(st.dictionaries(_keys, _json, max_size=8).map(lambda t: {"id": 1, **t}), max_size=3))
def test_parser_raises_only_documented_errors(tasks):
    with contextlib.suppress(SourceError):  # any other exception fails the test
        parse_export(json.dumps(tasks, allow_nan=True))


@settings(max_examples=200, deadline=None)
@given(document=_json)
def test_any_json_document_is_parsed_or_refused_with_a_source_error(document):
    with contextlib.suppress(SourceError):
        parse_export(json.dumps(document))

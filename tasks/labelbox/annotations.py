"""One Labelbox label's `annotations` (objects, classifications, relationships) as region columns.

Labelbox geometry is already in pixels: `bounding_box` {top, left, height, width}, `polygon`, `line`
(a polyline: its vertices as `keypoints`, result type `line`) and `point` lists of {x, y}. A text entity's
`location` counts characters with an inclusive end; the canonical span's end is exclusive. An object's
name is its class: it is the row's label and control (`from_name`). Classifications nested in an object
or an answer become the row's `attributes`, flattened to `question/sub-question` paths: a radio answer
as its name, a checklist as a list of names, free text as its content. Region ids are Labelbox feature
ids, which relationships point at.
"""

from __future__ import annotations

import json
from typing import Any

from ..json_node import Node
from .data_rows import DataRow

_GEOMETRY_KEYS = ("bounding_box", "polygon", "line", "point", "location")


def region_rows(annotations: Node, data_row: DataRow) -> list[dict[str, Any]]:
    """Region columns of every object, classification and relationship of a label, in that order."""
    rows = [_object(node, data_row) for node in annotations.child("objects").items()]
    rows += [_classification(node) for node in annotations.child("classifications").items()]
    rows += [_relationship(node) for node in annotations.child("relationships").items()]
    return rows


def _common(node: Node, kind: str, result_type: str | None, name: str | None) -> dict[str, Any]:
    if not isinstance(node.value, dict):
        raise node.expect("an annotation object")
    return {
        # Imported annotations may lack feature ids; the position ("#objects/2") stands in.
        "region_id": node.child("feature_id").as_id() or "#" + "/".join(node.pointer.rsplit("/", 2)[-2:]),
        "kind": kind,
        "result_type": result_type,
        "from_name": name,
        "raw": json.dumps(node.value, ensure_ascii=False),
        "source_pointer": node.pointer,
    }


def _index(node: Node) -> str:
    return node.pointer.rsplit("/", 1)[-1]


def _object(node: Node, data_row: DataRow) -> dict[str, Any]:
    present = next((key for key in _GEOMETRY_KEYS if not node.child(key).is_null()), None)
    kind = {"bounding_box": "box", "polygon": "polygon", "location": "span"}.get(present or "", "keypoints")
    if present is None:
        kind = "other"  # masks (a URL to a PNG), cuboids and the like: `raw` keeps them
    name = node.child("name").as_str()
    row = _common(node, kind, node.child("annotation_kind").as_str() or present, name)
    attributes = _answers(node.child("classifications"))
    row.update(
        labels=[name] if name else None,
        image_width=data_row.width,
        image_height=data_row.height,
        attributes=json.dumps(attributes, ensure_ascii=False, sort_keys=True) if attributes else None,
    )
    if present == "bounding_box":
        row["box"] = _box(node.child("bounding_box"))
    elif present == "polygon":
        row["polygon"] = [_points(node.child("polygon"), 3)]
    elif present == "line":
        row["result_type"] = "line"
        row["keypoints"] = _points(node.child("line"), 2)
    elif present == "point":
        row["keypoints"] = [_point(node.child("point"))]
    elif present == "location":
        row["span"] = _span(node.child("location"), data_row.text)
    return row


def _classification(node: Node) -> dict[str, Any]:
    name = node.child("name").as_str()
    text = node.child("text_answer")
    if not text.is_null():
        row = _common(node, "text", "text", name)
        row["text"] = [text.child("content").as_str() or ""]
        return row
    radio, checklist = node.child("radio_answer"), node.child("checklist_answers")
    answers = [radio] if not radio.is_null() else checklist.items()
    row = _common(node, "classification", "radio" if not radio.is_null() else "checklist", name)
    row["labels"] = [_answer_name(answer) for answer in answers]
    nested: dict[str, Any] = {}
    for answer in answers:
        nested.update(_answers(answer.child("classifications")))
    row["attributes"] = json.dumps(nested, ensure_ascii=False, sort_keys=True) if nested else None
    return row


def _relationship(node: Node) -> dict[str, Any]:
    # Export v2 writes source/target at the top; some exports nest them under `relationship`.
    inner = node.child("relationship") if not node.child("relationship").is_null() else node
    source, target = inner.child("source").as_id(), inner.child("target").as_id()
    if source is None or target is None:
        raise node.expect("a relationship with 'source' and 'target' feature ids")
    one_way = inner.child("unidirectional").as_bool()
    if one_way is None:
        one_way = (inner.child("type").as_str() or "unidirectional").lower() == "unidirectional"
    name = node.child("name").as_str()
    row = _common(node, "relation", "relationship", name)
    row["region_id"] = node.child("feature_id").as_id() or f"relation:{source}:{target}"
    row["labels"] = [name] if name else None
    row["relation"] = {"from_id": source, "to_id": target, "direction": "right" if one_way else "bi"}
    return row


def _answers(classifications: Node, prefix: str = "") -> dict[str, Any]:
    """Nested classifications as {"question[/sub-question]": answer}."""
    found: dict[str, Any] = {}
    for node in classifications.items():
        question = prefix + (node.child("name").as_str() or node.child("feature_schema_id").as_id() or _index(node))
        radio, checklist, text = node.child("radio_answer"), node.child("checklist_answers"), node.child("text_answer")
        if not text.is_null():
            found[question] = text.child("content").as_str()
            continue
        answers = [radio] if not radio.is_null() else checklist.items()
        names = [_answer_name(answer) for answer in answers]
        found[question] = names[0] if not radio.is_null() else names
        for answer in answers:
            found.update(_answers(answer.child("classifications"), f"{question}/"))
    return found


def _answer_name(answer: Node) -> str:
    name = answer.child("name").as_str() or answer.child("value").as_str()
    if name is None:
        raise answer.expect("an answer with a 'name'")
    return name


def _box(node: Node) -> dict[str, float]:
    values = [node.child(key).as_finite() for key in ("left", "top", "width", "height")]
    if any(v is None for v in values):
        raise node.expect("a bounding_box with top, left, height and width in pixels")
    x, y, w, h = (float(v or 0.0) for v in values)
    return {"x": x, "y": y, "w": w, "h": h, "rotation": 0.0}


def _point(node: Node) -> dict[str, float]:
    x, y = node.child("x").as_finite(), node.child("y").as_finite()
    if x is None or y is None:
        raise node.expect("a point {x, y} in pixels")
    return {"x": x, "y": y}


def _points(node: Node, minimum: int) -> list[dict[str, float]]:
    points = [_point(point) for point in node.items()]
    if len(points) < minimum:
        raise node.expect(f"at least {minimum} points")
    return points


def _span(node: Node, text: str | None) -> dict[str, Any]:
    start, last = node.child("start").as_int(), node.child("end").as_int()
    if start is None or last is None:
        raise node.expect("a text location {start, end}")
    token = node.child("token").as_str()
    if token is None and text is not None:
        token = text[start : last + 1]
    return {"start": start, "end": last + 1, "text": token}

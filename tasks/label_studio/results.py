"""One submission's Label Studio results as canonical region rows.

A region is what a person drew or selected: a box, polygon, keypoint, brush mask or text span, or a
task-level classification, text or relation. Label Studio writes per-region classifications (a
`perRegion` TextArea or Choices) as extra results carrying the region's id; they are folded into the
region's row as `attributes` (and, for text, `text`), and their source results stay in `raw`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..coco.rle import encode_counts, mask_counts
from ..errors import SourceFormatError
from ..json_node import Node
from .brush import decode_brush
from .geometry import box_px, code_point_span, point_px

_KIND_BY_TYPE = {
    "rectanglelabels": "box",
    "rectangle": "box",
    "polygonlabels": "polygon",
    "polygon": "polygon",
    "keypointlabels": "keypoints",
    "keypoint": "keypoints",
    "brushlabels": "mask",
    "brush": "mask",
    "labels": "span",
    "hypertextlabels": "span",
    "paragraphlabels": "span",
    "choices": "classification",
    "textarea": "text",
    "relation": "relation",
}
_REGION_KINDS = frozenset({"box", "polygon", "keypoints", "mask", "span"})
_MAX_INT32 = 2**31 - 1

TextLookup = Callable[[str | None], str | None]
"""The text an object (by `to_name`) shows, to place spans; None when unknown."""


@dataclass(frozen=True)
class SourceResult:
    """One result as Label Studio writes it, with the verbatim fragment it was read from."""

    node: Node
    raw: Any
    position: int


def region_rows(results: Sequence[SourceResult], text_of: TextLookup) -> list[dict[str, Any]]:
    """The region columns (kind, labels, geometry, text, attributes, raw...) of each region, in order."""
    rows: list[dict[str, Any]] = []
    used_ids: set[str] = set()
    for group in _group_by_region(results):
        row = _region_row(group, text_of)
        # Region ids are unique within a submission in valid data; keep rows apart when they are not.
        if row["region_id"] in used_ids:
            row["region_id"] = f"{row['region_id']}#{group[0].position}"
        used_ids.add(row["region_id"])
        rows.append(row)
    return rows


def _result_type(result: SourceResult) -> str | None:
    rtype = result.node.child("type").as_str()
    return rtype.lower() if rtype else None


def _kind(result: SourceResult) -> str:
    kind = _KIND_BY_TYPE.get(_result_type(result) or "", "other")
    value = result.node.child("value")
    if kind == "span" and value.child("start").is_null() and value.child("globalOffsets").is_null():
        return "classification"  # a Labels control attached to a drawn region, not a text span
    return kind


def _group_by_region(results: Sequence[SourceResult]) -> list[list[SourceResult]]:
    groups: dict[object, list[SourceResult]] = {}
    for result in results:
        region = result.node.child("id").as_id()
        key: object = region if region is not None and _kind(result) != "relation" else result.position
        groups.setdefault(key, []).append(result)
    return list(groups.values())


def _region_row(group: list[SourceResult], text_of: TextLookup) -> dict[str, Any]:
    primary = next((r for r in group if _kind(r) in _REGION_KINDS), group[0])
    kind = _kind(primary)
    node = primary.node
    value = node.child("value")
    rtype = _result_type(primary)
    width, height = _dimension(node.child("original_width")), _dimension(node.child("original_height"))
    labels = _labels(primary, kind)
    text = value.child("text").as_str_list() if kind == "text" else None
    attributes: dict[str, Any] = {}
    for extra in group:
        if extra is primary:
            continue
        extra_type = _result_type(extra)
        if extra_type and extra_type.endswith("labels"):
            labels = [*(labels or []), *(_labels(extra, "classification") or [])]
            continue
        name = extra.node.child("from_name").as_str() or extra_type or f"#{extra.position}"
        attributes[name] = extra.node.child("value").value
        if extra_type == "textarea":
            text = [*(text or []), *(extra.node.child("value").child("text").as_str_list() or [])]
    return {
        "region_id": _region_id(primary, kind),
        "kind": kind,
        "result_type": rtype,
        "from_name": node.child("from_name").as_str(),
        "to_name": node.child("to_name").as_str(),
        "labels": labels,
        "image_width": width,
        "image_height": height,
        "box": _box(value, width, height) if kind == "box" else None,
        "polygon": _polygon(value, width, height) if kind == "polygon" else None,
        "keypoints": _keypoints(value, width, height) if kind == "keypoints" else None,
        "mask": _mask(value, width, height) if kind == "mask" else None,
        "text": text,
        "span": _span(value, text_of(node.child("to_name").as_str())) if kind == "span" else None,
        "relation": _relation(node) if kind == "relation" else None,
        "attributes": json.dumps(attributes, ensure_ascii=False, sort_keys=True) if attributes else None,
        "score": node.child("score").as_float(),
        "result_positions": [r.position for r in group],
        "raw": json.dumps([r.raw for r in group], ensure_ascii=False),
        "source_pointer": group[0].node.pointer,
    }


def _region_id(result: SourceResult, kind: str) -> str:
    if kind == "relation":
        node = result.node
        return f"relation:{node.child('from_id').as_id()}:{node.child('to_id').as_id()}"
    return result.node.child("id").as_id() or f"#{result.position}"


def _dimension(node: Node) -> int | None:
    size = node.as_int()
    if size is not None and not 0 < size <= _MAX_INT32:
        raise node.expect("a positive image size in pixels")
    return size


def _labels(result: SourceResult, kind: str) -> list[str] | None:
    node, rtype = result.node, _result_type(result)
    if kind == "relation":
        return node.child("labels").as_str_list()
    if rtype is None or not (rtype.endswith("labels") or rtype == "choices"):
        return None
    labels = node.child("value").child(rtype)
    if kind == "other" and not (isinstance(labels.value, list) and all(isinstance(v, str) for v in labels.value)):
        return None  # an unknown result type may keep anything under its type name; `raw` has it
    return labels.as_str_list()


def _finite(value: Node, *keys: str) -> list[float] | None:
    numbers = [value.child(key).as_finite() for key in keys]
    return None if any(n is None for n in numbers) else [n for n in numbers if n is not None]


def _box(value: Node, width: int | None, height: int | None) -> dict[str, Any] | None:
    xywh = _finite(value, "x", "y", "width", "height")
    if xywh is None or width is None or height is None:
        return None
    x, y, w, h = xywh
    return box_px(x, y, w, h, value.child("rotation").as_finite() or 0.0, width, height)


def _polygon(value: Node, width: int | None, height: int | None) -> list[list[dict[str, float]]] | None:
    points = value.child("points")
    if points.is_null() or width is None or height is None:
        return None
    ring = []
    for point in points.items():
        coords = [c.as_finite() for c in point.items()]
        if len(coords) != 2 or coords[0] is None or coords[1] is None:
            raise point.expect("a point [x, y] in percent")
        ring.append(point_px(coords[0], coords[1], width, height))
    return [ring]


def _keypoints(value: Node, width: int | None, height: int | None) -> list[dict[str, float]] | None:
    xy = _finite(value, "x", "y")
    if xy is None or width is None or height is None:
        return None
    return [point_px(xy[0], xy[1], width, height)]


def _mask(value: Node, width: int | None, height: int | None) -> dict[str, Any] | None:
    """A brush region as compressed COCO RLE. A brush RLE that does not decode to the image's size is kept
    as it came (`label-studio-rle`), so the geometry check rejects the row and the rest of the task ingests."""
    fmt = value.child("format").as_str()
    source = value.child("rle").value
    if (fmt is None and source is None) or width is None or height is None:
        return None
    rle = source if isinstance(source, list) else []
    mask: dict[str, Any] = {"format": fmt, "width": width, "height": height, "rle": None, "rle_string": None}
    if fmt in ("rle", None):
        mask["format"] = "label-studio-rle"
        with contextlib.suppress(SourceFormatError):
            counts = encode_counts(mask_counts(decode_brush(rle, width, height)))
            return {**mask, "format": "coco-rle-compressed", "rle_string": counts}
    if rle and all(type(n) is int and 0 <= n <= 255 for n in rle):  # anything else is only in `raw`
        mask["rle"] = rle
    return mask


def _offset(node: Node) -> int | None:
    # HyperText spans give XPaths as start/end; their character offsets are in `globalOffsets`.
    return None if isinstance(node.value, str) else node.as_int()


def _span(value: Node, text: str | None) -> dict[str, Any]:
    offsets = value if value.child("globalOffsets").is_null() else value.child("globalOffsets")
    start, end = _offset(offsets.child("start")), _offset(offsets.child("end"))
    quoted = value.child("text").as_str()
    if start is not None and end is not None:
        start, end = code_point_span(text, start, end, quoted)
    return {"start": start, "end": end, "text": quoted}


def _relation(node: Node) -> dict[str, Any]:
    return {
        "from_id": node.child("from_id").as_id(),
        "to_id": node.child("to_id").as_id(),
        "direction": node.child("direction").as_str(),
    }

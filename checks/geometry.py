"""Geometry checks: shapes well formed (present, non-degenerate) and inside their image, in pixels."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from .report import RowReasons

_COLUMNS = ["id", "kind", "image_width", "image_height", "box", "polygon", "keypoints", "mask", "span"]
_COCO_MASKS = ("coco-rle", "coco-rle-compressed")  # masks are stored as COCO RLE; parsers convert others


def malformed_geometry(table: pa.Table) -> RowReasons:
    """Rows whose kind calls for a shape that is missing or degenerate (no area, empty span)."""
    failing: dict[int, str] = {}
    for row, record in enumerate(table.select(_COLUMNS).to_pylist()):
        problem = _malformed(record)
        if problem:
            failing[row] = problem
    return failing


def geometry_outside_image(table: pa.Table, tolerance_px: float = 0.5) -> RowReasons:
    """Rows with a box corner (rotation applied), polygon vertex or keypoint outside the image."""
    failing: dict[int, str] = {}
    for row, record in enumerate(table.select(_COLUMNS).to_pylist()):
        width, height = record["image_width"], record["image_height"]
        if width is None or height is None:
            continue
        outside = [
            (x, y)
            for x, y in _points(record)
            if not (-tolerance_px <= x <= width + tolerance_px and -tolerance_px <= y <= height + tolerance_px)
        ]
        if outside:
            x, y = outside[0]
            failing[row] = f"{record['kind']} reaches ({x:.1f}, {y:.1f}), outside the {width}x{height} image" + (
                f" ({len(outside)} points outside)" if len(outside) > 1 else ""
            )
    return failing


def _malformed(record: dict[str, Any]) -> str | None:
    kind = record["kind"]
    if kind in {"box", "polygon", "keypoints", "mask"} and not record[kind]:
        return f"{kind} row without a {kind} (coordinates or the image size missing at the source)"
    if kind == "box":
        box = record["box"]
        if not (box["w"] > 0 and box["h"] > 0):
            return f"degenerate box: width {box['w']}, height {box['h']}"
    if kind == "polygon":
        for ring in record["polygon"]:
            corners = {(p["x"], p["y"]) for p in ring}
            if len(corners) < 3 or _area(ring) == 0:
                return f"degenerate polygon: {len(corners)} distinct points, area {_area(ring):.1f}"
    if kind == "mask" and not (record["mask"]["rle"] or record["mask"]["rle_string"]):
        return f"mask {record['id']} without run-length data"
    if kind == "mask" and record["mask"]["format"] not in _COCO_MASKS:
        return (
            f"mask {record['id']} is not COCO RLE: its {record['mask']['format']} data does not decode to the "
            f"{record['image_width']}x{record['image_height']} image (cut short, or drawn on an image of another "
            "size); fix or redraw the region at the source"
        )
    span = record["span"] or {}
    start, end = span.get("start"), span.get("end")
    if kind == "span" and start is not None and end is not None and not 0 <= start < end:
        return f"empty or inverted span [{start}, {end})"
    return None


def _area(ring: list[dict[str, float]]) -> float:
    """Shoelace area of a ring."""
    return abs(sum(a["x"] * b["y"] - b["x"] * a["y"] for a, b in zip(ring, ring[1:] + ring[:1], strict=True))) / 2


def _points(record: dict[str, Any]) -> Iterable[tuple[float, float]]:
    if record["kind"] == "box" and record["box"]:
        yield from _box_corners(record["box"])
    elif record["kind"] == "polygon" and record["polygon"]:
        yield from ((p["x"], p["y"]) for ring in record["polygon"] for p in ring)
    elif record["kind"] == "keypoints" and record["keypoints"]:
        yield from ((p["x"], p["y"]) for p in record["keypoints"] if p is not None)


def _box_corners(box: dict[str, float]) -> list[tuple[float, float]]:
    # Label Studio rotates clockwise (on screen, y pointing down) around the top-left corner.
    angle = math.radians(box["rotation"] or 0.0)
    cos, sin = math.cos(angle), math.sin(angle)
    return [
        (box["x"] + dx * cos - dy * sin, box["y"] + dx * sin + dy * cos)
        for dx, dy in ((0.0, 0.0), (box["w"], 0.0), (box["w"], box["h"]), (0.0, box["h"]))
    ]

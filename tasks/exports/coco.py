"""COCO instances JSON from a selection: images, categories and box / polygon / mask annotations.

Ids. An image keeps its source id when every selected item's source id is an integer (COCO-sourced
items always are, however large); otherwise images are numbered from 1. Annotations likewise keep
integer region ids, and categories the `category_id` recorded at ingest, new labels getting the next
free ids. Geometry is written from the canonical pixel columns: `box` as bbox (a rotated box as the
bbox of its corners, plus its outline as the segmentation), polygons ring by ring, masks (COCO RLE, as
Label Studio brush masks are too once parsed) as stored, or compressed with `compress_masks`, their
bbox from the mask when the source gave none; a mask is one object unless its source said `iscrowd`, and
one drawn at another size than its image is skipped (COCO masks are at image size; we do not resample).
Keypoints, spans and classifications have no COCO instance form and are counted in `skipped`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import Catalog

from ..coco.rle import counts_bbox, decode_counts, encode_counts, mask_area
from .selection import Selection, select

_COCO_MASKS = ("coco-rle", "coco-rle-compressed")


@dataclass(frozen=True)
class CocoExport:
    document: dict[str, Any]
    snapshots: dict[str, int]
    skipped: Counter[str] = field(default_factory=Counter)  # rows left out, by kind (or mask format)


def to_coco(
    selection: Selection,
    *,
    categories: Sequence[Mapping[str, Any]] | None = None,
    compress_masks: bool = False,
    predictions: bool = False,
) -> CocoExport:
    """The COCO document of a selection's annotations (or, with `predictions`, its predictions)."""
    items = selection.items.to_pylist()
    rows = (selection.predictions if predictions else selection.annotations).to_pylist()
    image_ids = _integer_ids([item["source_id"] for item in items])
    by_item = {item["id"]: image_ids[i] for i, item in enumerate(items)}
    sizes = {item["id"]: (item["width"], item["height"]) for item in items}
    category_ids = _category_ids(rows, categories)
    skipped: Counter[str] = Counter()
    exportable = []
    for row in rows:
        reason = _unexportable(row, sizes[row["item_id"]])
        if reason:
            skipped[reason] += 1
        else:
            exportable.append(row)
    annotation_ids = _integer_ids([row["region_id"] for row in exportable])
    document = {
        "info": {
            "description": f"Labelhouse project {selection.project}",
            "version": json.dumps(selection.snapshots, sort_keys=True),
        },
        "images": [_image(item, by_item[item["id"]]) for item in items],
        "annotations": [
            _annotation(row, annotation_ids[i], by_item[row["item_id"]], category_ids, compress_masks)
            for i, row in enumerate(exportable)
        ],
        "categories": [
            {"id": category, "name": name, "supercategory": supercategory}
            for name, (category, supercategory) in sorted(category_ids.items(), key=lambda kv: kv[1][0])
        ],
    }
    return CocoExport(document=document, snapshots=selection.snapshots, skipped=skipped)


def export_coco(catalog: Catalog, project: str, path: str | Path, **options: Any) -> CocoExport:
    """Write the COCO file of `project` to `path`; `options` go to `select` (version, where, split,
    statuses) and `to_coco` (categories, compress_masks, predictions)."""
    coco_options = {k: options.pop(k) for k in ("categories", "compress_masks", "predictions") if k in options}
    export = to_coco(select(catalog, project, **options), **coco_options)
    Path(path).write_text(json.dumps(export.document, ensure_ascii=False), encoding="utf-8")
    return export


def _integer_ids(source_ids: Sequence[str | None]) -> list[int]:
    """The source ids as integers when they all are and are distinct; else 1..n."""
    if all(s is not None and s.isdecimal() for s in source_ids):
        numbers = [int(s or 0) for s in source_ids]
        if len(set(numbers)) == len(numbers):
            return numbers
    return list(range(1, len(source_ids) + 1))


def _attributes(row: Mapping[str, Any]) -> dict[str, Any]:
    value = json.loads(row["attributes"]) if row.get("attributes") else {}
    return value if isinstance(value, dict) else {}


def _category_ids(
    rows: Iterable[Mapping[str, Any]], given: Sequence[Mapping[str, Any]] | None
) -> dict[str, tuple[int, str | None]]:
    """Category id and supercategory by name: as given, else as recorded at ingest, else new ids."""
    found: dict[str, tuple[int, str | None]] = {}
    for category in given or []:
        found[str(category["name"])] = (int(category["id"]), category.get("supercategory"))
    for row in rows:
        attributes = _attributes(row)
        name = (row["labels"] or [None])[0]
        if name is not None and name not in found and isinstance(attributes.get("category_id"), int):
            found[name] = (attributes["category_id"], attributes.get("supercategory"))
    used = {category for category, _ in found.values()}
    next_id = max(used, default=0) + 1
    for row in rows:
        name = (row["labels"] or [None])[0]
        if name is not None and name not in found:
            found[name] = (next_id, None)
            next_id += 1
    return found


def _unexportable(row: Mapping[str, Any], image_size: tuple[int | None, int | None]) -> str | None:
    if not row["labels"]:
        return "unlabeled"
    kind: str = row["kind"]
    mask_format = (row["mask"] or {}).get("format")
    if kind == "mask" and mask_format not in _COCO_MASKS:
        return f"mask:{mask_format}"
    if kind not in ("box", "polygon", "mask"):
        return kind
    if kind == "box" and row["box"] is None:
        return "box without coordinates"
    if kind == "mask" and None not in image_size and (row["mask"]["width"], row["mask"]["height"]) != image_size:
        return "mask of another size than its image"
    return None


def _image(item: Mapping[str, Any], image_id: int) -> dict[str, Any]:
    return {
        "id": image_id,
        "file_name": item["uri"] or item["source_id"],
        "width": item["width"],
        "height": item["height"],
    }


def _annotation(
    row: Mapping[str, Any],
    annotation_id: int,
    image_id: int,
    categories: Mapping[str, tuple[int, str | None]],
    compress_masks: bool,
) -> dict[str, Any]:
    attributes = _attributes(row)
    segmentation: Any = []
    area: float | None = None
    bbox = _bbox(row["box"]) if row["box"] else None
    if row["kind"] == "polygon":
        rings = [[v for point in ring for v in (point["x"], point["y"])] for ring in row["polygon"]]
        segmentation, area = rings, sum(_ring_area(ring) for ring in row["polygon"])
        bbox = bbox or _extent([p for ring in row["polygon"] for p in ring])
    elif row["kind"] == "mask":
        segmentation, area, mask_bbox = _mask(row["mask"], compress_masks)
        bbox = bbox or mask_bbox
    elif row["box"]["rotation"]:
        corners = _corners(row["box"])
        segmentation, bbox = [[v for point in corners for v in (point["x"], point["y"])]], _extent(corners)
    if bbox is None:
        bbox = [0.0, 0.0, 0.0, 0.0]
    recorded = attributes.get("area")
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": categories[row["labels"][0]][0],
        "bbox": bbox,
        "area": recorded if isinstance(recorded, int | float) else (area if area is not None else bbox[2] * bbox[3]),
        "segmentation": segmentation,
        "iscrowd": int(attributes.get("iscrowd") or 0),
        **({"score": row["score"]} if row.get("score") is not None else {}),
    }


def _bbox(box: Mapping[str, float]) -> list[float]:
    return _extent(_corners(box)) if box["rotation"] else [box["x"], box["y"], box["w"], box["h"]]


def _corners(box: Mapping[str, float]) -> list[dict[str, float]]:
    # Rotation is clockwise in degrees around the top-left corner (image y axis points down).
    angle = math.radians(box["rotation"] or 0.0)
    cos, sin = math.cos(angle), math.sin(angle)
    return [
        {"x": box["x"] + dx * cos - dy * sin, "y": box["y"] + dx * sin + dy * cos}
        for dx, dy in ((0.0, 0.0), (box["w"], 0.0), (box["w"], box["h"]), (0.0, box["h"]))
    ]


def _extent(points: Sequence[Mapping[str, float]]) -> list[float]:
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _ring_area(ring: Sequence[Mapping[str, float]]) -> float:
    pairs = zip(ring, [*ring[1:], *ring[:1]], strict=True)
    return abs(sum(a["x"] * b["y"] - b["x"] * a["y"] for a, b in pairs)) / 2


def _mask(mask: Mapping[str, Any], compress: bool) -> tuple[dict[str, Any], int, list[float]]:
    """The RLE segmentation, area and bbox of a stored mask."""
    counts: list[int] = mask["rle"] if mask["rle"] is not None else decode_counts(mask["rle_string"])
    written: Any = mask["rle_string"] if mask["rle_string"] is not None else counts
    if compress:
        written = encode_counts(counts)
    segmentation = {"size": [mask["height"], mask["width"]], "counts": written}
    return segmentation, mask_area(counts), counts_bbox(counts, mask["height"])

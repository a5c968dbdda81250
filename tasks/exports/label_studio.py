"""Label Studio import JSON: one task per item, its regions as predictions (pre-annotations).

Regions are written from the canonical columns, in percent of the image size as Label Studio wants:
`rectanglelabels`, `polygonlabels` (one result per ring), `keypointlabels` (one per point), masks
(COCO RLE, from any source) as brush masks in Label Studio's RLE, `choices`, `textarea`, text spans
(`labels`, offsets in UTF-16 code units as Label Studio's frontend counts them) and relations; per-region
classifications recorded as Label Studio values (`attributes`) come back as results sharing the
region's id. Each source submission becomes one prediction, so the regions of one labeling act stay
together. Control names: `controls` (by kind) if given, else the row's own (Label Studio rows), else
`label`, with `image` / `text` as the object. Rows without the size their geometry needs are skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import Catalog

from ..coco.rle import counts_mask, decode_counts
from ..label_studio.brush import encode_brush
from ..label_studio.items import text_lookup
from .selection import Selection, select

_RESULT_TYPE = {
    "box": "rectanglelabels",
    "polygon": "polygonlabels",
    "keypoints": "keypointlabels",
    "mask": "brushlabels",
    "classification": "choices",
    "text": "textarea",
    "span": "labels",
}
_DATA_FIELD = {"image": "image", "text": "text", "html": "html", "audio": "audio", "video": "video", "pdf": "pdf"}


@dataclass(frozen=True)
class LabelStudioImport:
    tasks: list[dict[str, Any]]
    snapshots: dict[str, int]
    skipped: Counter[str] = field(default_factory=Counter)


def to_label_studio(
    selection: Selection,
    *,
    predictions: bool = False,
    model_version: str | None = None,
    controls: Mapping[str, tuple[str, str]] | None = None,
) -> LabelStudioImport:
    """Tasks with the selection's annotations (or, with `predictions`, its predictions) as predictions."""
    rows = (selection.predictions if predictions else selection.annotations).to_pylist()
    by_item: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        by_item.setdefault(row["item_id"], {}).setdefault(row["submission_id"], []).append(row)
    skipped: Counter[str] = Counter()
    tasks = []
    for position, item in enumerate(selection.items.to_pylist(), start=1):
        task_predictions = []
        for submission, regions in by_item.get(item["id"], {}).items():
            results = []
            for region in regions:
                written = _results(region, item, controls or {})
                if written is None:
                    skipped[region["kind"]] += 1
                results.extend(written or [])
            if results:
                scores = [r["score"] for r in regions if r.get("score") is not None]
                version = model_version or regions[0].get("model_version") or f"labelhouse:{submission}"
                task_predictions.append(
                    {"model_version": version, "score": min(scores) if scores else None, "result": results}
                )
        tasks.append({"id": _task_id(item, position), "data": _data(item), "predictions": task_predictions})
    return LabelStudioImport(tasks=tasks, snapshots=selection.snapshots, skipped=skipped)


def export_label_studio(catalog: Catalog, project: str, path: str | Path, **options: Any) -> LabelStudioImport:
    """Write the import JSON of `project` to `path`; `options` go to `select` and `to_label_studio`."""
    ls_options = {k: options.pop(k) for k in ("predictions", "model_version", "controls") if k in options}
    export = to_label_studio(select(catalog, project, **options), **ls_options)
    Path(path).write_text(json.dumps(export.tasks, ensure_ascii=False), encoding="utf-8")
    return export


def _task_id(item: Mapping[str, Any], position: int) -> int:
    # Label Studio gives imported tasks new ids; the source id is kept when it is one, to match them up.
    source_id = item["source_id"]
    return int(source_id) if item["source"] == "label-studio" and source_id.isdecimal() else position


def _data(item: Mapping[str, Any]) -> dict[str, Any]:
    if item["source"] == "label-studio" and item["data"]:
        data: dict[str, Any] = json.loads(item["data"])
        return data
    field_name = _DATA_FIELD.get(item["media_type"], "url")
    return {field_name: item["uri"] or item["source_id"]}


def _names(region: Mapping[str, Any], controls: Mapping[str, tuple[str, str]], media: str) -> tuple[str, str]:
    if region["kind"] in controls:
        return controls[region["kind"]]
    return region["from_name"] or "label", region["to_name"] or ("text" if media == "text" else "image")


def _results(
    region: Mapping[str, Any], item: Mapping[str, Any], controls: Mapping[str, tuple[str, str]]
) -> list[dict[str, Any]] | None:
    kind = region["kind"]
    if kind == "empty":
        return []  # a submission without regions: nothing to pre-annotate, nothing lost
    from_name, to_name = _names(region, controls, item["media_type"])
    base: dict[str, Any] = {"id": region["region_id"] or region["id"], "from_name": from_name, "to_name": to_name}
    if kind == "relation":
        relation = region["relation"] or {}
        return [
            {
                "type": "relation",
                "from_id": relation.get("from_id"),
                "to_id": relation.get("to_id"),
                "direction": relation.get("direction") or "right",
                **({"labels": region["labels"]} if region["labels"] else {}),
            }
        ]
    values = _values(region, item)
    if values is None:
        return None
    result_type = _RESULT_TYPE[kind]
    width, height = region["image_width"] or item["width"], region["image_height"] or item["height"]
    if kind == "mask":  # the brush RLE is drawn at the mask's own size
        width, height = region["mask"]["width"], region["mask"]["height"]
    results = []
    for index, value in enumerate(values):
        result = {**base, "type": result_type, "value": value}
        if index:
            result["id"] = f"{base['id']}#{index}"
        if kind in ("box", "polygon", "keypoints", "mask"):
            result.update(original_width=width, original_height=height, image_rotation=0)
        if region.get("score") is not None:
            result["score"] = region["score"]
        results.append(result)
    return results + _attribute_results(region, base)


def _values(region: Mapping[str, Any], item: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The `value` objects of a region (several for multi-ring polygons and keypoint lists)."""
    kind, labels = region["kind"], region["labels"] or []
    width, height = region["image_width"] or item["width"], region["image_height"] or item["height"]
    sized = bool(width and height)
    if kind == "box" and region["box"] and sized:
        box = region["box"]
        percent = {"x": 100 * box["x"] / width, "y": 100 * box["y"] / height}
        extent = {"width": 100 * box["w"] / width, "height": 100 * box["h"] / height}
        return [{**percent, **extent, "rotation": box["rotation"] or 0.0, "rectanglelabels": labels}]
    if kind == "polygon" and region["polygon"] and sized:
        return [
            {
                "points": [[100 * p["x"] / width, 100 * p["y"] / height] for p in ring],
                "closed": True,
                "polygonlabels": labels,
            }
            for ring in region["polygon"]
        ]
    if kind == "keypoints" and region["keypoints"] and sized:
        return [
            {"x": 100 * p["x"] / width, "y": 100 * p["y"] / height, "keypointlabels": labels}
            for p in region["keypoints"]
        ]
    if kind == "mask" and region["mask"]:
        rle = _brush_rle(region["mask"])
        return None if rle is None else [{"format": "rle", "rle": rle, "brushlabels": labels}]
    if kind == "classification":
        return [{"choices": labels}]
    if kind == "text":
        return [{"text": region["text"] or []}]
    if kind == "span" and region["span"]:
        span = region["span"]
        text = text_lookup(_data(item), None).get(region["to_name"] or "")
        start, end = _utf16(text, span["start"]), _utf16(text, span["end"])
        return [{"start": start, "end": end, "text": span["text"], "labels": labels}]
    return None


def _brush_rle(mask: Mapping[str, Any]) -> list[int] | None:
    """A stored mask in Label Studio's brush RLE; None for a format it cannot be drawn from."""
    if mask["format"] not in ("coco-rle", "coco-rle-compressed"):
        return None
    counts = mask["rle"] if mask["rle"] is not None else decode_counts(mask["rle_string"])
    return encode_brush(counts_mask(counts, mask["height"], mask["width"]))


def _utf16(text: str | None, offset: int | None) -> int | None:
    """A code-point offset as Label Studio's frontend counts: UTF-16 code units (emoji count twice)."""
    if text is None or offset is None:
        return offset
    return len(text[:offset].encode("utf-16-le")) // 2


def _attribute_results(region: Mapping[str, Any], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-region classifications stored as Label Studio values ({"choices": [...]}, {"text": [...]})."""
    attributes = json.loads(region["attributes"]) if region["attributes"] else {}
    results = []
    for name, value in attributes.items():
        if isinstance(value, dict) and ("choices" in value or "text" in value):
            result_type = "choices" if "choices" in value else "textarea"
            results.append({**base, "from_name": name, "type": result_type, "value": value})
    return results

"""Labelbox import NDJSON (model-assisted labeling or label import): one annotation per line.

Data rows are named by Labelbox id for Labelbox-sourced items, else by global key (the item's URI, or
its source id). Every line gets a deterministic UUID derived from the row id, so exporting the same
version twice gives the same file and Labelbox replaces rather than duplicates. Geometry is in
pixels; a text entity's end is written inclusive, as Labelbox counts. Objects carry the
classifications recorded in `attributes` (a string as a radio answer, a list as a checklist); masks
and rows of other kinds are counted in `skipped`.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import Catalog
from storage.groundtruth import region_row_id

from .selection import Selection, select

_NAMESPACE = uuid.UUID("6f1c2b0e-4f43-4a8e-9d59-3c1c8d2f7a10")  # Labelhouse's, for uuid5 line ids


@dataclass(frozen=True)
class LabelboxImport:
    lines: list[dict[str, Any]]
    snapshots: dict[str, int]
    skipped: Counter[str] = field(default_factory=Counter)


def to_labelbox(selection: Selection, *, predictions: bool = False) -> LabelboxImport:
    """Import lines for the selection's annotations (or, with `predictions`, its predictions)."""
    items = {item["id"]: item for item in selection.items.to_pylist()}
    rows = (selection.predictions if predictions else selection.annotations).to_pylist()
    skipped: Counter[str] = Counter()
    lines = []
    for row in rows:
        line = _line(row, items[row["item_id"]])
        if line is None:
            skipped[row["kind"]] += 1
        else:
            lines.append(line)
    return LabelboxImport(lines=lines, snapshots=selection.snapshots, skipped=skipped)


def export_labelbox(catalog: Catalog, project: str, path: str | Path, **options: Any) -> LabelboxImport:
    """Write the import NDJSON of `project` to `path`; `options` go to `select` (and `predictions`)."""
    predictions = bool(options.pop("predictions", False))
    export = to_labelbox(select(catalog, project, **options), predictions=predictions)
    with Path(path).open("w", encoding="utf-8") as handle:
        for line in export.lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return export


def line_uuid(row_id: str) -> str:
    """The import uuid of a canonical row: stable across exports."""
    return str(uuid.uuid5(_NAMESPACE, row_id))


def _data_row(item: Mapping[str, Any]) -> dict[str, str]:
    if item["source"] == "labelbox":
        return {"id": item["source_id"]}
    return {"globalKey": item["uri"] or item["source_id"]}


def _line(row: Mapping[str, Any], item: Mapping[str, Any]) -> dict[str, Any] | None:
    kind, labels = row["kind"], row["labels"] or []
    name = row["from_name"] if kind in ("classification", "text") else (labels[0] if labels else row["from_name"])
    if not name:
        return None
    line: dict[str, Any] = {"uuid": line_uuid(row["id"]), "dataRow": _data_row(item), "name": name}
    if kind == "box" and row["box"] and not row["box"]["rotation"]:
        box = row["box"]
        line["bbox"] = {"top": box["y"], "left": box["x"], "height": box["h"], "width": box["w"]}
    elif kind == "polygon" and row["polygon"]:
        line["polygon"] = [{"x": p["x"], "y": p["y"]} for p in row["polygon"][0]]
    elif kind == "keypoints" and row["keypoints"]:
        points = [{"x": p["x"], "y": p["y"]} for p in row["keypoints"]]
        if row["result_type"] == "line" or len(points) > 1:
            line["line"] = points
        else:
            line["point"] = points[0]
    elif kind == "span" and row["span"] and row["span"]["start"] is not None:
        line["location"] = {"start": row["span"]["start"], "end": row["span"]["end"] - 1}
    elif kind == "classification" and labels:
        line["answer"] = {"name": labels[0]} if row["result_type"] == "radio" else [{"name": n} for n in labels]
    elif kind == "text":
        line["answer"] = " ".join(row["text"] or [])
    elif kind == "relation" and row["relation"]:
        relation = row["relation"]
        ends = [region_row_id(row["item_id"], row["submission_id"], relation[end]) for end in ("from_id", "to_id")]
        line["relationship"] = {
            "source": line_uuid(ends[0]),
            "target": line_uuid(ends[1]),
            "type": "bidirectional" if relation["direction"] == "bi" else "unidirectional",
        }
    else:
        return None
    nested = _classifications(row)
    if nested:
        line["classifications"] = nested
    if row.get("score") is not None:
        line["confidence"] = row["score"]
    return line


def _classifications(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    attributes = json.loads(row["attributes"]) if row["attributes"] else {}
    nested = []
    for question, answer in attributes.items():
        if "/" in question:
            continue  # deeper levels need the ontology's nesting, which the flat attributes do not keep
        if isinstance(answer, str):
            nested.append({"name": question, "answer": {"name": answer}})
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            nested.append({"name": question, "answer": [{"name": a} for a in answer]})
    return nested

"""Parse a COCO instances file (and optionally its image directory) into canonical change sets.

Mapping. An image is an item `<source>:<image id>`; an annotation is one region row
`<item>/annotation:<id>/<id>` with status `ground_truth` (a published data set, not a labeling act in
progress). Geometry stays in pixels: `bbox` fills `box` for every kind; polygons (one ring per part of
the object) make a `polygon` row, RLE a `mask` row in the form it came in (`coco-rle` counts, or
`coco-rle-compressed` string), an empty segmentation a `box` row. The category name is the label;
`category_id`, `supercategory`, `iscrowd` and `area` go to `attributes`, so an export writes them back
unchanged. Ids are kept as written: JSON integers of any size (image ids above 2^31 are common).
An annotation that cannot be read becomes a source reject; the others ingest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.groundtruth import item_id, region_row_id

from ..changes import ChangeSet, canonical_table
from ..errors import SourceError, SourceFormatError, UnrecognizedSourceError
from ..json_node import Node
from ..json_source import canonical_sha256, load_json
from ..media import pixels
from ..provenance import Provenance
from ..rejects import SourceReject
from .rle import decode_counts

SOURCE = "coco"
LABEL_CONTROL = "category"  # `from_name` of COCO rows: the class map is {"category": names}


@dataclass(frozen=True)
class ParsedCoco:
    idempotency_key: str  # commit with it: the same file (and images) again is a no-op
    changes: ChangeSet
    categories: list[dict[str, Any]]  # as in the file: id, name, supercategory
    rejects: list[SourceReject] = field(default_factory=list)

    @property
    def class_map(self) -> dict[str, list[str]]:
        """The labels the file allows, for the `label_in_class_map` check."""
        return {LABEL_CONTROL: [str(c["name"]) for c in self.categories]}


def parse_coco(
    data: bytes | str,
    *,
    name: str = "instances.json",
    image_dir: str | Path | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    whole_project: bool = True,
) -> ParsedCoco:
    """Parse a COCO instances file's content; `name` is how errors and `source_ref` refer to it.

    With `image_dir`, each image's `file_name` is read from it into the item's `blob` (a name that
    leaves the directory is refused). `whole_project` says the file is the whole data set, so rows it
    lacks are stale. Raises UnrecognizedSourceError if the file is not COCO instances.
    """
    doc = load_json(data, name)
    root = Node.root(doc.value, name)
    if not isinstance(doc.value, dict) or not isinstance(doc.value.get("images"), list):
        raise UnrecognizedSourceError(
            f"{name}: not a COCO instances file (a JSON object with 'images', 'annotations' and 'categories'); "
            "export the data set again in COCO format"
        )
    provenance = Provenance(source=source, source_ref=f"{name}@sha256:{doc.sha256[:16]}", flow_run_id=flow_run_id)
    categories = _categories(root.child("categories"))
    images, blob_hashes = _images(root.child("images"), provenance, image_dir)
    annotations: list[dict[str, Any]] = []
    rejects: list[SourceReject] = []
    for node in root.child("annotations").items():
        try:
            annotations.append(_annotation(node, images, categories, provenance))
        except SourceFormatError as exc:
            text = json.dumps(node.value, ensure_ascii=False)
            rejects.append(SourceReject(provenance.source_ref, node.pointer, str(exc), text))
    changes = ChangeSet(
        items=canonical_table("items", list(images.values())),
        annotations=canonical_table("annotations", annotations),
        predictions=canonical_table("predictions", []),
        whole_project=whole_project,
        replaced_items=tuple(row["id"] for row in images.values()),
    )
    key = f"{source}:instances:{canonical_sha256([doc.sha256, blob_hashes, whole_project])}"
    return ParsedCoco(idempotency_key=key, changes=changes, categories=list(categories.values()), rejects=rejects)


def _categories(node: Node) -> dict[int, dict[str, Any]]:
    categories: dict[int, dict[str, Any]] = {}
    for entry in node.items():
        category = entry.child("id").as_int()
        label = entry.child("name").as_str()
        if category is None or label is None:
            raise entry.expect("a category with an integer 'id' and a 'name'")
        categories[category] = {"id": category, "name": label, "supercategory": entry.child("supercategory").as_str()}
    return categories


def _images(
    node: Node, provenance: Provenance, image_dir: str | Path | None
) -> tuple[dict[int, dict[str, Any]], list[str | None]]:
    images: dict[int, dict[str, Any]] = {}
    hashes: list[str | None] = []
    for entry in node.items():
        image = entry.child("id").as_int()
        if image is None:
            raise entry.expect("an image with an integer 'id'")
        file_name = entry.child("file_name").as_str()
        blob = _read_image(image_dir, file_name, entry) if image_dir is not None and file_name else None
        hashes.append(hashlib.sha256(blob).hexdigest() if blob is not None else None)
        images[image] = {
            "id": item_id(provenance.source, str(image)),
            "source_id": str(image),
            "media_type": "image",
            "uri": file_name,
            "width": pixels(entry.child("width").as_int()),
            "height": pixels(entry.child("height").as_int()),
            "data": json.dumps(entry.value, ensure_ascii=False),
            "blob": blob,
            **provenance.columns(json.dumps(entry.value, ensure_ascii=False), entry.pointer),
        }
    return images, hashes


def _read_image(image_dir: str | Path, file_name: str, entry: Node) -> bytes | None:
    root = Path(image_dir).resolve()
    path = (root / file_name).resolve()
    if not path.is_relative_to(root):
        raise SourceError(
            f"{entry.where}: at {entry.pointer}/file_name: {file_name!r} points outside the image directory "
            f"{root}; fix the file name"
        )
    return path.read_bytes() if path.is_file() else None


def _annotation(
    node: Node, images: dict[int, dict[str, Any]], categories: dict[int, dict[str, Any]], provenance: Provenance
) -> dict[str, Any]:
    annotation = node.child("id").as_int()
    image = node.child("image_id").as_int()
    category = node.child("category_id").as_int()
    if annotation is None or image is None:
        raise node.expect("an annotation with integer 'id' and 'image_id'")
    item = images.get(image, {})
    width, height = item.get("width"), item.get("height")
    known = categories.get(category) if category is not None else None
    kind, result_type, geometry = _geometry(node.child("segmentation"), width, height)
    box = _bbox(node.child("bbox"))
    attributes = {
        "category_id": category,
        "supercategory": known["supercategory"] if known else None,
        "iscrowd": node.child("iscrowd").as_int() or 0,
        "area": node.child("area").as_float(),
    }
    submission = f"annotation:{annotation}"
    row_item = item_id(provenance.source, str(image))
    return {
        "id": region_row_id(row_item, submission, str(annotation)),
        "item_id": row_item,
        "submission_id": submission,
        "region_id": str(annotation),
        "status": "ground_truth",
        "kind": kind,
        "result_type": result_type,
        "from_name": LABEL_CONTROL,
        "to_name": "image",
        # An unknown category id is kept visible (and fails the class map check) instead of dropped.
        "labels": [known["name"] if known else f"#{category}"],
        "image_width": width,
        "image_height": height,
        "box": box,
        "polygon": geometry if kind == "polygon" else None,
        "mask": geometry if kind == "mask" else None,
        "attributes": json.dumps(attributes, ensure_ascii=False, sort_keys=True),
        **provenance.columns(json.dumps(node.value, ensure_ascii=False), node.pointer),
    }


def _bbox(node: Node) -> dict[str, float] | None:
    if node.is_null():
        return None
    values = [n.as_finite() for n in node.items()]
    if len(values) != 4 or any(v is None for v in values):
        raise node.expect("a bbox [x, y, width, height]")
    x, y, w, h = (float(v or 0.0) for v in values)
    return {"x": x, "y": y, "w": w, "h": h, "rotation": 0.0}


def _geometry(node: Node, width: int | None, height: int | None) -> tuple[str, str, Any]:
    """(kind, COCO segmentation type, geometry): a polygon's rings, an RLE mask, or a bare box."""
    if isinstance(node.value, dict):
        return "mask", "rle", _rle(node, width, height)
    rings = []
    for ring in node.items():
        coords = [c.as_finite() for c in ring.items()]
        if len(coords) < 6 or len(coords) % 2 or any(c is None for c in coords):
            raise ring.expect("a polygon [x1, y1, x2, y2, ...] with at least 3 points")
        rings.append([{"x": coords[i], "y": coords[i + 1]} for i in range(0, len(coords), 2)])
    return ("polygon", "polygon", rings) if rings else ("box", "bbox", None)


def _rle(node: Node, width: int | None, height: int | None) -> dict[str, Any]:
    size = [n.as_int() for n in node.child("size").items()]
    if len(size) != 2 or size[0] is None or size[1] is None:
        raise node.child("size").expect("an RLE size [height, width]")
    rle_height, rle_width = size[0], size[1]
    if (width, height) != (rle_width, rle_height) and width is not None and height is not None:
        raise node.child("size").expect(f"the image's size [{height}, {width}]")
    counts = node.child("counts")
    if isinstance(counts.value, str):
        try:
            total = sum(decode_counts(counts.value))
        except SourceFormatError as exc:
            raise counts.error(f"{exc}; re-encode the mask") from None
        rle, text = None, counts.value
    else:
        rle = [n.as_int() for n in counts.items()]
        if not rle or any(c is None or c < 0 for c in rle):
            raise counts.expect("RLE counts: a string or an array of non-negative integers")
        total, text = sum(c or 0 for c in rle), None
    if total != rle_height * rle_width:
        raise counts.error(
            f"RLE counts cover {total} pixels, but the mask is {rle_height}x{rle_width} = {rle_height * rle_width}; "
            "re-encode the mask"
        )
    return {
        "format": "coco-rle-compressed" if text is not None else "coco-rle",
        "width": rle_width,
        "height": rle_height,
        "rle": rle,
        "rle_string": text,
    }

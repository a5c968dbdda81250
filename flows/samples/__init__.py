"""Sample inputs bundled with the package (package data), so `labelhouse demo` runs from any install.

`export_json.json` is a Label Studio 1.23.2 JSON export (3 tasks, annotations with boxes, polygons,
keypoints, masks and choices, drafts, one prediction) and `label_studio_config.xml` its labeling config:
copies of tests/fixtures/label-studio/. `coco_instances.json` is a COCO instances file (4 images, boxes,
polygons, crowd RLE, a non-ASCII category): a copy of tests/fixtures/coco/.
"""

from __future__ import annotations

from pathlib import Path

LABEL_STUDIO_EXPORT = "export_json.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"
COCO_INSTANCES = "coco_instances.json"


def sample_path(name: str) -> Path:
    """The path of a bundled sample file."""
    return Path(__file__).resolve().parent / name

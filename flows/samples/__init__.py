"""Sample inputs bundled with the package (package data), so `labelhouse demo` runs from any install.

`export_json.json` is a Label Studio 1.23.2 JSON export (3 tasks, annotations with boxes, polygons,
keypoints, masks and choices, drafts, one prediction) and `label_studio_config.xml` its labeling config:
copies of tests/fixtures/label-studio/.
"""

from __future__ import annotations

from pathlib import Path

LABEL_STUDIO_EXPORT = "export_json.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"


def sample_path(name: str) -> Path:
    """The path of a bundled sample file."""
    return Path(__file__).resolve().parent / name

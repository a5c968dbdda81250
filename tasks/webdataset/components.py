"""The components of WebDataset samples other than the one kept as the item's blob.

A sample is one item; its main file (the first image, else the first file) is the item's `blob`, and
every other file (`cls`, `json`, `seg.png`...) is one row of `<project>__components`, its bytes in the
`data` record field. Component ids are `<item id>/<extension>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pyarrow as pa

from storage.groundtruth import PROVENANCE_COLUMNS, SPECS

if TYPE_CHECKING:
    from storage import Catalog, Dataset

COMPONENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("extension", pa.string(), nullable=False),
        pa.field("content_type", pa.string()),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("data", pa.large_binary()),
        # The same provenance columns as the canonical tables.
        *(SPECS["items"].schema.field(name) for name in PROVENANCE_COLUMNS),
    ]
)


def components_name(project: str) -> str:
    return f"{project}__components"


def ensure_components(catalog: Catalog, project: str) -> Dataset:
    """Open the project's components dataset, creating it when missing."""
    return catalog.create_dataset(
        components_name(project), COMPONENTS_SCHEMA, primary_keys=["id"], record_fields=["data"], exist_ok=True
    )

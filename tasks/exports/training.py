"""A training table pinned to a version: one row per item with its regions, as Parquet (and a
Hugging Face dataset when `datasets` is installed).

The snapshots read are written into the file: the Parquet schema metadata `labelhouse` (and the Hugging
Face dataset's `info.description`) hold the project, each table's snapshot id, the filter and the
split, so a model can always be traced to the exact labels it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage import Catalog
from storage.groundtruth import ANNOTATIONS_SCHEMA

from ..errors import SourceError
from .selection import DEFAULT_STATUSES, Selection, select

METADATA_KEY = b"labelhouse"
_ITEM_COLUMNS = ("id", "source", "source_id", "media_type", "uri", "width", "height", "metadata")
_REGION_COLUMNS = (
    "region_id",
    "submission_id",
    "status",
    "kind",
    "labels",
    "box",
    "polygon",
    "keypoints",
    "mask",
    "text",
    "span",
    "relation",
    "attributes",
)
REGION = pa.struct([ANNOTATIONS_SCHEMA.field(name) for name in _REGION_COLUMNS])


@dataclass(frozen=True)
class TrainingExport:
    path: Path
    rows: int
    provenance: dict[str, Any]  # what is in the file's `labelhouse` metadata


def training_table(selection: Selection, *, blobs: bool = False) -> pa.Table:
    """One row per selected item: its columns, optionally its blob, and `regions` (its annotations)."""
    items = selection.items
    columns = [*_ITEM_COLUMNS, *(["blob"] if blobs else [])]
    regions = _regions_by_item(selection.annotations, items["id"])
    return items.select(columns).append_column(pa.field("regions", pa.list_(REGION)), regions)


def export_training(
    catalog: Catalog,
    project: str,
    path: str | Path,
    *,
    version: Any = None,
    where: str | None = None,
    split: str | None = None,
    statuses: tuple[str, ...] = DEFAULT_STATUSES,
    blobs: bool = False,
    huggingface_dir: str | Path | None = None,
) -> TrainingExport:
    """Write the training table of `project` at `version` to the Parquet file `path` (and, with
    `huggingface_dir`, save it as a Hugging Face dataset there)."""
    selection = select(catalog, project, version=version, where=where, split=split, statuses=statuses, blobs=blobs)
    provenance = {
        "project": project,
        "snapshots": selection.snapshots,
        "version": version if isinstance(version, str | int | dict) or version is None else str(version),
        "where": where,
        "split": split,
        "statuses": list(statuses),
    }
    table = training_table(selection, blobs=blobs)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(provenance)})
    pq.write_table(table, path)
    if huggingface_dir is not None:
        _save_huggingface(table, Path(huggingface_dir), provenance)
    return TrainingExport(path=Path(path), rows=table.num_rows, provenance=provenance)


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The `labelhouse` metadata of a training table file: which snapshots it was built from."""
    metadata = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in metadata:
        raise SourceError(f"{path}: no '{METADATA_KEY.decode()}' metadata; it was not written by export_training")
    value: dict[str, Any] = json.loads(metadata[METADATA_KEY])
    return value


def _regions_by_item(annotations: pa.Table, item_ids: pa.ChunkedArray) -> pa.Array:
    """A list of region structs per item, in the order of `item_ids` (empty list for none)."""
    position = pc.index_in(annotations["item_id"], value_set=item_ids.combine_chunks()).to_numpy(zero_copy_only=False)
    order = np.argsort(position, kind="stable")  # regions of one item next to each other, in item order
    regions = pa.StructArray.from_arrays(
        [annotations[name].combine_chunks().take(order) for name in _REGION_COLUMNS], fields=list(REGION)
    )
    counts = np.bincount(position, minlength=len(item_ids))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, regions, type=pa.list_(REGION))


def _save_huggingface(table: pa.Table, directory: Path, provenance: dict[str, Any]) -> None:
    try:
        import datasets
    except ImportError:
        raise SourceError("a Hugging Face export needs the `datasets` package: pip install datasets") from None
    info = datasets.DatasetInfo(description=json.dumps(provenance))
    datasets.Dataset(table, info=info).save_to_disk(str(directory))

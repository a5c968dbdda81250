"""The canonical ground-truth datasets every source maps into: items, annotations and predictions.

One project is three datasets in a catalog, named `<project>__items`, `<project>__annotations` and
`<project>__predictions` (see `dataset_names`). Connectors (`tasks/`) produce tables with exactly these
schemas; checks (`checks/`) read them; neither imports the other.

Identity. Keys are derived from the source's own ids, never from ingestion order, so re-ingesting the
same source is an upsert:
- item `id` = `<source>:<source item id>`, e.g. `label-studio:42` (Label Studio task ids are unique per
  instance, so `source` names the instance when a project is fed by several);
- annotation / prediction `id` = `<item id>/<submission id>[/<region id>]`, where the submission is one
  labeling act (`annotation:7`, `draft:3`, `prediction:9`) and the region id is the source's region id
  (or a positional fallback for results without one). A submission without regions (cancelled, or
  submitted empty) is one row of kind `empty` without a region id.

Geometry is in pixels of the original image (`image_width` x `image_height`), never in percent:
`box` is (x, y) of the top-left corner, width, height and clockwise rotation in degrees around that
corner; `polygon` is a list of rings; `keypoints` a list of points; `mask` a run-length encoding.
Text spans use Unicode code-point offsets (Python `str` indexing), whatever the source counted in.

Every row keeps `raw`, the verbatim source JSON it was parsed from (for items: the whole source record,
so an export can be rebuilt from items alone), and provenance: `source` (connector), `source_ref`
(export file and content hash, API call or webhook action), `source_pointer` (RFC 6901 JSON pointer of
`raw` inside `source_ref`) and `flow_run_id` (when orchestrated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

import pyarrow as pa

if TYPE_CHECKING:
    from .catalog import Catalog
    from .dataset import Dataset

KINDS: Final = (
    "box",
    "polygon",
    "keypoints",
    "mask",
    "classification",
    "text",
    "span",
    "relation",
    "empty",
    "other",
)
"""What an annotation row holds; `other` is a source result type with no canonical mapping (see `raw`)."""

STATUSES: Final = ("submitted", "cancelled", "ground_truth", "draft", "prediction")
MEDIA_TYPES: Final = ("image", "text", "html", "audio", "video", "timeseries", "dialogue", "pdf", "unknown")

PROVENANCE_COLUMNS: Final = ("source", "source_ref", "source_pointer", "flow_run_id", "raw")
"""Columns that say where a row came from; compare rows without them to tell a real change."""

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
POINT: Final = pa.struct([("x", pa.float64()), ("y", pa.float64())])
BOX: Final = pa.struct(
    [
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("w", pa.float64()),
        ("h", pa.float64()),
        ("rotation", pa.float64()),
    ]
)
MASK: Final = pa.struct(
    [
        # `coco-rle` (counts in `rle`) or `coco-rle-compressed` (counts string in `rle_string`); Label Studio
        # brushes arrive converted to the latter. `label-studio-rle` (its encoding, bytes as ints in `rle`)
        # only marks a brush that did not decode: the geometry check quarantines that row with the reason.
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("rle", pa.list_(pa.int64())),
        ("rle_string", pa.string()),
    ]
)
SPAN: Final = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("text", pa.string())])
RELATION: Final = pa.struct([("from_id", pa.string()), ("to_id", pa.string()), ("direction", pa.string())])
ATTACHMENT: Final = pa.struct([("name", pa.string()), ("uri", pa.string())])

_PROVENANCE_FIELDS: Final = [
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_ref", pa.string(), nullable=False),
    pa.field("source_pointer", pa.string(), nullable=False),
    pa.field("flow_run_id", pa.string()),
    pa.field("raw", pa.string(), nullable=False),
]

ITEMS_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("uri", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("data", pa.string()),  # JSON object: the source's data fields, which vary per item
        pa.field("metadata", pa.string()),  # JSON object
        pa.field("attachments", pa.list_(ATTACHMENT)),
        pa.field("created_at", TIMESTAMP),
        pa.field("updated_at", TIMESTAMP),
        pa.field("blob", pa.large_binary()),
        *_PROVENANCE_FIELDS,
    ]
)

_REGION_FIELDS: Final = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("submission_id", pa.string(), nullable=False),
    pa.field("region_id", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("annotator", pa.string()),  # the source's stable user id
    pa.field("annotator_email", pa.string()),
    pa.field("created_at", TIMESTAMP),
    pa.field("updated_at", TIMESTAMP),
    pa.field("lead_time_s", pa.float64()),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("result_type", pa.string()),  # the source's own type name, e.g. `rectanglelabels`
    pa.field("from_name", pa.string()),  # the control that produced the row
    pa.field("to_name", pa.string()),  # the object (image, text) it labels
    pa.field("labels", pa.list_(pa.string())),
    pa.field("image_width", pa.int32()),
    pa.field("image_height", pa.int32()),
    pa.field("box", BOX),
    pa.field("polygon", pa.list_(pa.list_(POINT))),
    pa.field("keypoints", pa.list_(POINT)),
    pa.field("mask", MASK),
    pa.field("text", pa.list_(pa.string())),
    pa.field("span", SPAN),
    pa.field("relation", RELATION),
    pa.field("attributes", pa.string()),  # JSON object: per-region classifications by control name
    pa.field("result_positions", pa.list_(pa.int32())),  # where `raw`'s results sat in the submission
]

ANNOTATIONS_SCHEMA: Final = pa.schema([*_REGION_FIELDS, *_PROVENANCE_FIELDS])
PREDICTIONS_SCHEMA: Final = pa.schema(
    [
        *_REGION_FIELDS,
        pa.field("model_version", pa.string()),
        pa.field("score", pa.float64()),  # the region's score, else the prediction's
        *_PROVENANCE_FIELDS,
    ]
)


class TableSpec(NamedTuple):
    """How one canonical dataset is created."""

    schema: pa.Schema
    primary_keys: tuple[str, ...]
    record_fields: tuple[str, ...]


SPECS: Final = {
    "items": TableSpec(ITEMS_SCHEMA, ("id",), ("blob",)),
    "annotations": TableSpec(ANNOTATIONS_SCHEMA, ("id",), ()),
    "predictions": TableSpec(PREDICTIONS_SCHEMA, ("id",), ()),
}


def item_id(source: str, source_id: str) -> str:
    """The stable id of an item: the same source record always gets the same id."""
    return f"{source}:{source_id}"


def region_row_id(item: str, submission_id: str, region_id: str | None) -> str:
    """The stable id of an annotation or prediction row (see the module docstring)."""
    return f"{item}/{submission_id}" if region_id is None else f"{item}/{submission_id}/{region_id}"


def dataset_names(project: str) -> dict[str, str]:
    """Dataset name per canonical table for `project`: {"items": "<project>__items", ...}."""
    return {table: f"{project}__{table}" for table in SPECS}


class GroundTruth(NamedTuple):
    """The three dataset handles of one project."""

    items: Dataset
    annotations: Dataset
    predictions: Dataset


def ensure_groundtruth(catalog: Catalog, project: str) -> GroundTruth:
    """Open the project's canonical datasets, creating the missing ones; safe to call concurrently.

    Raises DatasetExistsError if a dataset of that name exists with another schema.
    """
    names = dataset_names(project)
    return GroundTruth(
        **{
            table: catalog.create_dataset(
                names[table],
                spec.schema,
                primary_keys=list(spec.primary_keys),
                record_fields=list(spec.record_fields),
                exist_ok=True,
            )
            for table, spec in SPECS.items()
        }
    )

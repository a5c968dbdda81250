"""What an export reads: a project's canonical rows at one version, optionally filtered.

A version is what `Dataset.read` takes (snapshot id, tag, branch, datetime) applied to every table,
or one per table ({"items": 3, "annotations": 7}); snapshot ids differ per dataset, tags and datetimes
line them up. The filter is a SQL condition on the items (DuckDB), e.g. `media_type = 'image'`;
`split` keeps items whose metadata `split` is that value. The snapshots read are recorded, so an
export says exactly what it holds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from storage import Catalog
from storage.groundtruth import SPECS, dataset_names

from ..errors import SourceError

DEFAULT_STATUSES = ("submitted", "ground_truth", "prediction")
"""Rows an export holds by default: not cancelled submissions, not drafts."""


@dataclass(frozen=True)
class Selection:
    project: str
    snapshots: dict[str, int]  # table -> snapshot id read
    items: pa.Table
    annotations: pa.Table
    predictions: pa.Table


def select(
    catalog: Catalog,
    project: str,
    *,
    version: Any = None,
    where: str | None = None,
    split: str | None = None,
    statuses: Collection[str] = DEFAULT_STATUSES,
    blobs: bool = False,
) -> Selection:
    """The project's items matching `where` and `split`, with their annotations and predictions in `statuses`."""
    names = dataset_names(project)
    missing = [name for name in names.values() if name not in catalog]
    if missing:
        raise SourceError(f"project {project!r} has no dataset(s) {missing} in {catalog.uri}; ingest something first")
    datasets = {table: catalog.dataset(name) for table, name in names.items()}
    snapshots = {table: ds.snapshot(_version_of(version, table)).id for table, ds in datasets.items()}
    conditions = [f"({where})"] if where else []
    if split is not None:
        quoted = split.replace("'", "''")
        conditions.append(f"json_extract_string(metadata, '$.split') = '{quoted}'")
    item_filter = None
    if conditions:
        query = f'SELECT id FROM "{names["items"]}" WHERE ' + " AND ".join(conditions)
        ids = catalog.sql(query, versions={names["items"]: snapshots["items"]})["id"]
        item_filter = pc.field("id").isin(ids.combine_chunks().cast(pa.string()))
    item_columns = None if not blobs else SPECS["items"].schema.names
    items = datasets["items"].read_all(filter=item_filter, columns=item_columns, version=snapshots["items"])
    wanted = pc.field("item_id").isin(items["id"].combine_chunks()) & pc.field("status").isin(
        pa.array(list(statuses), pa.string())
    )
    return Selection(
        project=project,
        snapshots=snapshots,
        items=items,
        annotations=datasets["annotations"].read_all(filter=wanted, version=snapshots["annotations"]),
        predictions=datasets["predictions"].read_all(filter=wanted, version=snapshots["predictions"]),
    )


def _version_of(version: Any, table: str) -> Any:
    return version.get(table) if isinstance(version, Mapping) else version

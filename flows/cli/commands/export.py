"""`labelhouse export`: a project's ground truth, pinned to a version, in a training or labeling format."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from storage import Catalog
from tasks.exports.coco import export_coco
from tasks.exports.label_studio import export_label_studio
from tasks.exports.labelbox import export_labelbox
from tasks.exports.training import export_training

from ..options import DEFAULT_CATALOG, CatalogOption, JsonOption, VersionOption, parse_version
from ..output import emit
from ..tables import facts_table


class Format(StrEnum):
    """Export formats."""

    coco = "coco"
    label_studio = "label-studio"
    labelbox = "labelbox"
    parquet = "parquet"


def _summary(result: Any) -> dict[str, Any]:
    skipped = dict(getattr(result, "skipped", {}) or {})
    snapshots = getattr(result, "snapshots", None) or getattr(result, "provenance", {}).get("snapshots", {})
    rows = getattr(result, "rows", None)
    return {"snapshots": snapshots, "skipped": skipped, **({"rows": rows} if rows is not None else {})}


EXPORTERS: dict[Format, Callable[..., Any]] = {
    Format.coco: export_coco,
    Format.label_studio: export_label_studio,
    Format.labelbox: export_labelbox,
    Format.parquet: export_training,
}


def export(
    project: Annotated[str, typer.Argument(help="Project whose canonical datasets are exported.", show_default=False)],
    path: Annotated[Path, typer.Argument(help="File to write.", show_default=False)],
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.coco,
    version: VersionOption = None,
    where: Annotated[str | None, typer.Option("--where", help="SQL condition on the project's items.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Only items whose metadata split is this.")] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Write PROJECT at a version as COCO, Label Studio import JSON (pre-annotations), Labelbox import NDJSON
    or a Parquet training table; the snapshot ids it was read from are recorded in the output."""
    pinned = None if version is None else parse_version(version)
    result = EXPORTERS[format](Catalog(catalog), project, path, version=pinned, where=where, split=split)
    data = {"project": project, "format": format.value, "path": str(path), **_summary(result)}
    emit(data, as_json, lambda: facts_table(data, f"exported {project} as {format.value}"))

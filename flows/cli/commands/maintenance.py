"""`labelhouse validate` and `vacuum`: checking a dataset end to end and removing unreferenced files."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Group
from rich.filesize import decimal
from rich.text import Text

from storage import Catalog

from ..options import DEFAULT_CATALOG, CatalogOption, DatasetArgument, JsonOption
from ..output import emit


def validate(dataset: DatasetArgument, catalog: CatalogOption = DEFAULT_CATALOG, as_json: JsonOption = False) -> None:
    """Check every log entry parses and every referenced file exists with its recorded size and rows.

    Problems are listed on stderr with exit code 1.
    """
    ds = Catalog(catalog).dataset(dataset)
    report = ds.validate()
    emit(
        {"dataset": ds.name, "valid": True, **asdict(report)},
        as_json,
        lambda: (
            f"{ds.name} is valid: {report.snapshots} snapshots, {report.data_files} data files, "
            f"{report.deletion_vectors} deletion vectors, {report.change_logs} change logs"
        ),
    )


def vacuum(
    dataset: DatasetArgument,
    grace_seconds: Annotated[
        float,
        typer.Option(
            "--grace-seconds", min=0, help="Keep unreferenced files younger than this, so running writers keep theirs."
        ),
    ] = 3600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Remove files no snapshot references (left by crashed or conflicting writers)."""
    ds = Catalog(catalog).dataset(dataset)
    stats = ds.vacuum(grace_period=timedelta(seconds=grace_seconds), dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    summary = Text(f"{verb} {stats.files_removed} files ({decimal(stats.bytes_removed)}) from {ds.name}")
    listing = [Text(f"  {path}", style="dim") for path in stats.removed] if dry_run else []
    emit({"dataset": ds.name, "dry_run": dry_run, **asdict(stats)}, as_json, lambda: Group(summary, *listing))

"""`labelhouse log`: a dataset's versions."""

from __future__ import annotations

from typing import Annotated

import typer

from storage import Catalog

from ..options import DEFAULT_CATALOG, CatalogOption, DatasetArgument, JsonOption
from ..output import emit
from ..records import version_records
from ..tables import versions_table


def log(
    dataset: DatasetArgument,
    branch: Annotated[
        str | None, typer.Option("--branch", help="Only this branch's history (its head and its ancestors).")
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Show a dataset's versions, oldest first: every snapshot of every branch, with its tags."""
    ds = Catalog(catalog).dataset(dataset)
    records = version_records(ds, branch)
    title = f"Versions of {ds.name}" + (f" on branch {branch}" if branch else "")
    emit(records, as_json, lambda: versions_table(records, title))

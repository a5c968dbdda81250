"""`labelhouse restore`: bring an earlier version back as a new snapshot."""

from __future__ import annotations

from typing import Annotated

import typer

from storage import Catalog

from ..options import DEFAULT_CATALOG, VERSION_HELP, CatalogOption, DatasetArgument, JsonOption, parse_version
from ..output import emit
from ..records import snapshot_record
from ..tables import changes_text


def restore(
    dataset: DatasetArgument,
    version: Annotated[str, typer.Argument(help=VERSION_HELP, show_default=False)],
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Commit a new snapshot on main whose content equals VERSION; history is kept."""
    ds = Catalog(catalog).dataset(dataset)
    snap = ds.restore(parse_version(version))
    said = (
        f"Restored {ds.name} to snapshot {snap.summary['restored_from']} as new snapshot {snap.id}: "
        f"{snap.summary['rows']} rows, {changes_text(snap.summary)}"
    )
    emit(snapshot_record(ds, snap), as_json, lambda: said)

"""`labelhouse tag` and `untag`: names for snapshots."""

from __future__ import annotations

from typing import Annotated

import typer

from storage import Catalog

from ..options import DEFAULT_CATALOG, CatalogOption, DatasetArgument, JsonOption, VersionOption, parse_version
from ..output import emit

TagArgument = Annotated[str, typer.Argument(help="Tag name.", show_default=False)]


def tag(
    dataset: DatasetArgument,
    name: TagArgument,
    version: VersionOption = None,
    force: Annotated[bool, typer.Option("--force", help="Move the tag if it already names another snapshot.")] = False,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Name a snapshot (default: the head of main). Tags are immutable unless --force moves them."""
    ds = Catalog(catalog).dataset(dataset)
    snap = ds.tag(name, version=None if version is None else parse_version(version), force=force)
    data = {"dataset": ds.name, "tag": name, "snapshot_id": snap.id}
    emit(data, as_json, lambda: f"Tagged snapshot {snap.id} of {ds.name} as {name}")


def untag(
    dataset: DatasetArgument,
    name: TagArgument,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Remove a tag (the snapshot it named stays)."""
    ds = Catalog(catalog).dataset(dataset)
    ds.untag(name)
    data = {"dataset": ds.name, "tag": name, "removed": True}
    emit(data, as_json, lambda: f"Removed tag {name} from {ds.name}")

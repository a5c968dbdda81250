"""`labelhouse branch` and `merge`: working on a copy of a dataset and bringing it back."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from storage import Catalog

from ..options import DEFAULT_CATALOG, VERSION_HELP, CatalogOption, DatasetArgument, JsonOption, parse_version
from ..output import emit
from ..records import snapshot_record
from ..tables import changes_text

BranchArgument = Annotated[str, typer.Argument(help="Branch name.", show_default=False)]


def branch(
    dataset: DatasetArgument,
    name: BranchArgument,
    from_version: Annotated[
        str | None, typer.Option("--from", help=f"Start the branch here (default: the head of main). {VERSION_HELP}")
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Create a branch of a dataset: what is written to it leaves main alone until merged."""
    ds = Catalog(catalog).dataset(dataset)
    created = ds.create_branch(name, from_version=None if from_version is None else parse_version(from_version))
    snap = created.snapshot()
    said = f"Created branch {name} of {ds.name} at snapshot {snap.summary.get('from_snapshot')} (snapshot {snap.id})"
    emit(snapshot_record(ds, snap), as_json, lambda: said)


def merge(
    dataset: DatasetArgument,
    source: Annotated[str, typer.Argument(help="Branch (or version) to merge.", show_default=False)],
    into: Annotated[str, typer.Option("--into", help="Branch to merge into.")] = "main",
    strategy: Annotated[
        Literal["ours", "theirs"] | None,
        typer.Option("--strategy", help="Resolve keys changed on both sides: keep ours or take theirs."),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Merge SOURCE into a branch (default main) as one snapshot; conflicting keys fail unless --strategy."""
    target = Catalog(catalog).dataset(dataset, branch=into)
    snap = target.merge(source, strategy=strategy)
    said = f"Merged {source} into {into} of {target.name}: snapshot {snap.id} {changes_text(snap.summary)}".rstrip()
    emit(snapshot_record(target, snap), as_json, lambda: said)

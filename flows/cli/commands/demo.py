"""`labelhouse demo`: the storage tour, with a progress bar and a summary."""

from __future__ import annotations

from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from storage import Catalog

from ...demo import DATASET, Tour
from ..options import DEFAULT_CATALOG, CatalogOption, JsonOption
from ..output import console, emit
from ..records import version_records
from ..tables import facts_table, records_table, versions_table


def demo(catalog: CatalogOption = DEFAULT_CATALOG, as_json: JsonOption = False) -> None:
    """Tour the storage engine on a small `frames` dataset (dropped and created again on every run)."""
    tour = Tour(Catalog(catalog))
    steps = tour.steps()
    done = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console(), disable=as_json) as progress:
        task = progress.add_task("Storage tour", total=len(steps))
        for title, step in steps:
            progress.update(task, description=title)
            done.append({"step": title, "result": step()})
            progress.advance(task)
        progress.update(task, description="Storage tour")
    versions = version_records(tour.dataset)
    data = {"catalog": tour.catalog.uri, "dataset": DATASET, "steps": done, "versions": versions, "facts": tour.facts}
    emit(
        data,
        as_json,
        lambda: Group(
            records_table(done, ["step", "result"], f"Tour of {DATASET} in {tour.catalog.uri}"),
            versions_table(versions, f"Versions of {DATASET}"),
            facts_table(tour.facts, "Summary"),
        ),
    )

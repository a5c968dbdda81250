"""`labelhouse demo`: the storage tour, then the bundled Label Studio sample through the flows."""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from storage import Catalog

from ...demo import DATASET, Tour
from ..options import DEFAULT_CATALOG, CatalogOption, JsonOption
from ..output import console, emit
from ..records import version_records
from ..tables import facts_table, records_table, versions_table

# Prefect's ephemeral API (a local server subprocess) can take longer than its 20 s default to start on
# a small machine; flow logs would tear the progress bar, and the summary says what happened.
PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PREFECT_LOGGING_LEVEL": "WARNING"}


def demo(catalog: CatalogOption = DEFAULT_CATALOG, as_json: JsonOption = False) -> None:
    """Tour the storage engine, then run the Label Studio sample through the flows on Prefect's ephemeral
    API: check, commit, quarantine a bad row, refresh a view, query with SQL (the `demo` project and the
    `frames` dataset are dropped and created again on every run)."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from ...pipeline_demo import PipelineDemo  # imports Prefect, with the settings above

    cat = Catalog(catalog)
    tour = Tour(cat)
    pipeline = PipelineDemo(cat)
    steps: list[tuple[str, Callable[[], str]]] = [("Storage tour", lambda: _run_tour(tour)), *pipeline.steps()]
    done = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console(), disable=as_json) as progress:
        task = progress.add_task("Demo", total=len(steps))
        for title, step in steps:
            progress.update(task, description=title)
            done.append({"step": title, "result": step()})
            progress.advance(task)
        progress.update(task, description="Demo")
    versions = version_records(tour.dataset)
    facts = {**tour.facts, **pipeline.facts}
    data = {"catalog": cat.uri, "dataset": DATASET, "steps": done, "versions": versions, "facts": facts}
    emit(
        data,
        as_json,
        lambda: Group(
            records_table(done, ["step", "result"], f"Demo in {cat.uri}"),
            versions_table(versions, f"Versions of {DATASET}"),
            facts_table(facts, "Summary"),
        ),
    )


def _run_tour(tour: Tour) -> str:
    results = [step() for _, step in tour.steps()]
    return f"{len(results)} steps on {DATASET}: {results[-1]}"

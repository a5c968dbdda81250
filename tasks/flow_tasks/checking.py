"""The check step of an ingest: every table of a batch checked before anything is committed.

`tasks.commit.commit_changes` checks again as it commits (it decides row by row what to quarantine);
checking first lets a flow show the results as their own step and refuse a batch as a whole, before
any table of it is written, when one table fails too often.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pyarrow as pa

from checks import CheckReport, ClassMap, check_batch
from storage import Catalog, DatasetNotFoundError
from storage.groundtruth import dataset_names

from ..changes import TABLES, ChangeSet
from ..quarantine import commit_with_quarantine
from .outcome import CheckSummary


def check_changes(
    catalog: Catalog,
    project: str,
    changes: ChangeSet,
    class_map: ClassMap | None,
    relation_labels: Collection[str] | None,
) -> dict[str, CheckReport]:
    """A check report per canonical table of `changes`; annotations and predictions must reference items
    of the batch or of the project's items dataset, and use labels of `class_map` when it is given."""
    referenced = {
        item for table in ("annotations", "predictions") for item in getattr(changes, table)["item_id"].to_pylist()
    }
    known_items = set(changes.items["id"].to_pylist())
    missing = sorted(referenced - known_items)
    if missing:
        try:
            items = catalog.dataset(dataset_names(project)["items"])
            known_items.update(items.take(missing, columns=["id"])["id"].to_pylist())
        except DatasetNotFoundError:
            pass  # the project's first ingest: only the batch's items exist
    reports: dict[str, CheckReport] = {}
    for table in TABLES:
        rows: pa.Table = getattr(changes, table)
        if table == "items":
            reports[table] = check_batch(table, rows)
        else:
            reports[table] = check_batch(
                table, rows, item_ids=known_items, class_map=class_map, relation_labels=relation_labels
            )
    return reports


def refuse_if_too_many_fail(
    catalog: Catalog, project: str, changes: ChangeSet, reports: Mapping[str, CheckReport], max_failure_rate: float
) -> None:
    """Raise BatchRejectedError, naming the table and its most common failure, if any table of the batch
    fails more often than `max_failure_rate`."""
    names = dataset_names(project)
    for table in TABLES:
        if reports[table].failure_rate > max_failure_rate:
            # commit_with_quarantine refuses such a batch with a detailed message before writing anything.
            commit_with_quarantine(
                catalog, names[table], getattr(changes, table), reports[table], max_failure_rate=max_failure_rate
            )


def check_summaries(reports: Mapping[str, CheckReport]) -> list[CheckSummary]:
    """Each check's result per table, flattened for artifacts."""
    return [
        CheckSummary(table, result.name, result.passed, result.failing_count)
        for table, report in reports.items()
        for result in report.results
    ]

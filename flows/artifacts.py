"""Prefect artifacts of flow runs: what the UI shows about a run (summaries, checks, diffs, links).

Keys group artifacts across runs in the UI's Artifacts page (lowercase letters, digits and dashes only);
every run creates its own versions of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from storage import Catalog
from storage.formats import log_name
from tasks.flow_tasks.maintenance import MaintenanceOutcome
from tasks.flow_tasks.outcome import BatchOutcome, TableOutcome
from tasks.flow_tasks.refresh import RefreshOutcome


def artifact_key(*parts: str) -> str:
    """A valid artifact key made of `parts` (anything else becomes dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


class ProgressArtifact:
    """A progress artifact updated as a run goes through its steps."""

    def __init__(self, key: str, total_steps: int, description: str) -> None:
        self._total = max(total_steps, 0)
        self._done = 0
        # Called from sync code, these return the id (the async variant would be awaited instead).
        self._id = cast(UUID, create_progress_artifact(self._percent(), key=key, description=description))

    def step(self, count: int = 1) -> None:
        """Mark `count` more steps done."""
        self._done = min(self._done + count, self._total)
        update_progress_artifact(self._id, self._percent())

    def expect(self, remaining: int) -> None:
        """Set how many steps are still to do (for runs that learn their work as they go)."""
        self._total = self._done + max(remaining, 0)
        update_progress_artifact(self._id, self._percent())

    def _percent(self) -> float:
        # Nothing to do is done: a run with no steps shows 100%, not a bar stuck at 0.
        return 100.0 * self._done / self._total if self._total else 100.0


def publish_ingest(project: str, batches: Sequence[BatchOutcome]) -> None:
    """The ingest's artifacts: commit summary and check results (tables), diff stats and rejected rows'
    reasons (markdown), and a link to each new version's log entry."""
    tables = [t for batch in batches for t in batch.tables]
    create_table_artifact(
        [{"batch": b.idempotency_key, **t.record()} for b in batches for t in b.tables],
        key=artifact_key(project, "commit-summary"),
        description=f"Snapshots written to the {project} datasets, with rows inserted, updated, deleted and rejected",
    )
    create_table_artifact(
        [{"batch": b.idempotency_key, **vars(c)} for b in batches for c in b.checks],
        key=artifact_key(project, "check-results"),
        description=f"Check results of each table of each batch ingested into {project}",
    )
    catalog = Catalog(batches[0].catalog) if batches else None
    markdown = [f"# Ingest into {project}", "", "## Diff stats", ""]
    markdown += ["| dataset | from | to | inserted | updated | deleted |", "| --- | --- | --- | --- | --- | --- |"]
    markdown += [_diff_row(catalog, t) for t in tables if t.changed and catalog is not None]
    markdown += ["", "## Rejected rows", ""]
    rejections = [(t.dataset, r) for t in tables for r in t.rejections]
    if rejections:
        markdown += ["| dataset | row key | check | reason |", "| --- | --- | --- | --- |"]
        markdown += [f"| {ds} | `{_md(r.key)}` | {r.check} | {_md(r.reason)} |" for ds, r in rejections]
        markdown += ["", f"All rejected rows are kept in the `<dataset>__rejects` datasets of {project}."]
    else:
        markdown.append("No row was rejected.")
    create_markdown_artifact("\n".join(markdown), key=artifact_key(project, "ingest-report"))
    for table in tables:
        if table.changed and catalog is not None:
            create_link_artifact(
                version_link(catalog.uri, table.dataset, table.snapshot_id),
                link_text=f"{table.dataset} @ snapshot {table.snapshot_id}",
                key=artifact_key(table.dataset, "version"),
                description=f"The log entry of the version this run committed to {table.dataset}",
            )


def publish_refresh(outcome: RefreshOutcome) -> None:
    """The refresh's artifacts: what was refreshed, and a link to the snapshot it reached."""
    create_table_artifact(
        [{k: v for k, v in vars(outcome).items() if k != "dependents"}, *outcome.dependents],
        key=artifact_key(outcome.dataset, "refresh"),
        description=f"Refresh of what depends on {outcome.dataset} up to snapshot {outcome.snapshot_id}",
    )
    create_link_artifact(
        version_link(outcome.catalog, outcome.dataset, outcome.snapshot_id),
        link_text=f"{outcome.dataset} @ snapshot {outcome.snapshot_id} (refreshed)",
        key=artifact_key(outcome.dataset, "refreshed-version"),
    )


def publish_maintenance(catalog: str, outcomes: Sequence[MaintenanceOutcome]) -> None:
    """One table row per maintained dataset."""
    create_table_artifact(
        [vars(o) for o in outcomes],
        key="catalog-maintenance",
        description=f"Compaction, expiry and vacuum of the datasets in {catalog}",
    )


def version_link(catalog_uri: str, dataset: str, snapshot_id: int | None) -> str:
    """Where a version's log entry lives: a file:// URL for local catalogs, the object URI on S3."""
    path = f"{catalog_uri.rstrip('/')}/{dataset}/{log_name(snapshot_id or 0)}"
    return path if "://" in path else f"file://{path}"


def _diff_row(catalog: Catalog, table: TableOutcome) -> str:
    counts: Counter[str] = Counter()
    for part in catalog.dataset(table.dataset).iter_diff(table.parent_id, table.snapshot_id):
        counts.update(part["_change_type"].to_pylist())
    return (
        f"| {table.dataset} | {table.parent_id} | {table.snapshot_id} | {counts['insert']} | "
        f"{counts['update_postimage']} | {counts['delete']} |"
    )


def _md(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")

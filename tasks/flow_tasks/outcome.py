"""What committing a batch did to each dataset: plain records for artifacts, events and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from checks import CheckReport
from storage import Catalog
from storage.groundtruth import dataset_names

from ..changes import TABLES
from ..commit import SOURCE_FORMAT_CHECK, CommitOutcome
from ..quarantine import rejects_name
from ..rejects import SourceReject

REASONS_KEPT = 100  # rejected rows listed per dataset; the rejects dataset holds all of them


@dataclass(frozen=True)
class Rejection:
    """One reason one row was quarantined."""

    key: str
    check: str
    reason: str


@dataclass(frozen=True)
class CheckSummary:
    """One check's result on one table's batch."""

    table: str
    check: str
    passed: bool
    failing_rows: int


@dataclass(frozen=True)
class TableOutcome:
    """One canonical dataset after a batch: its snapshots and row changes.

    `snapshot_id` is the dataset's snapshot after the batch (None when nothing was written), `parent_id`
    the one the batch started from. `new` is False when the commit was found already made by an
    earlier run (the same content ingested again): nothing changed, so nothing is announced.
    """

    table: str
    dataset: str
    snapshot_id: int | None
    parent_id: int | None
    inserted: int
    updated: int
    deleted: int
    rejected: int
    new: bool
    rejects_dataset: str | None = None
    rejects_snapshot_id: int | None = None
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether this batch wrote a snapshot of the dataset in this run."""
        return self.snapshot_id is not None and self.new

    def record(self) -> dict[str, Any]:
        """The outcome as a flat dict (rejections left out), e.g. for a table artifact or `--json`."""
        data = asdict(self)
        del data["rejections"]
        return data


@dataclass(frozen=True)
class BatchOutcome:
    """A committed batch: one outcome per canonical table, and the checks that ran."""

    catalog: str
    project: str
    idempotency_key: str
    tables: list[TableOutcome]
    checks: list[CheckSummary]


def table_outcomes(
    catalog: Catalog,
    project: str,
    committed: CommitOutcome,
    reports: Mapping[str, CheckReport],
    heads_before: Mapping[str, int],
    run_started: datetime,
    source_rejects: tuple[SourceReject, ...] = (),
) -> list[TableOutcome]:
    """What `tasks.commit.commit_changes` did to each canonical dataset, with the rejected rows' reasons.

    `heads_before` are the datasets' heads before the commit; a commit whose snapshot is older than
    `run_started` was made by an earlier run (its idempotency key was found).
    """
    names = dataset_names(project)
    outcomes = []
    for table in TABLES:
        quarantined = committed.tables[table]
        upsert = quarantined.committed
        deleted = committed.deleted[table]
        # The stale-row delete comes last; its snapshot is the head (commit_changes does not return it).
        snapshot_id = catalog.dataset(names[table]).snapshot().id if deleted else upsert.id if upsert else None
        rejections = [
            Rejection(str(row.key), check, reason)
            for row in reports[table].failing_rows
            for check, reason in row.reasons
        ]
        if table == "items":
            rejections += [Rejection(r.source_pointer, SOURCE_FORMAT_CHECK, r.reason) for r in source_rejects]
        outcomes.append(
            TableOutcome(
                table=table,
                dataset=names[table],
                snapshot_id=snapshot_id,
                parent_id=upsert.parent_id if upsert else heads_before[table] if deleted else None,
                inserted=upsert.summary.get("rows_inserted", 0) if upsert else 0,
                updated=upsert.summary.get("rows_updated", 0) if upsert else 0,
                deleted=deleted,
                rejected=quarantined.rejected_rows + (committed.source_rejects if table == "items" else 0),
                new=deleted > 0 or (upsert is not None and upsert.created_at >= run_started),
                rejects_dataset=rejects_name(names[table]) if quarantined.rejected else None,
                rejects_snapshot_id=quarantined.rejected.id if quarantined.rejected else None,
                rejections=rejections[:REASONS_KEPT],
            )
        )
    return outcomes

"""The steps every ingest flow shares once a source has staged its batches: check, commit with
quarantine, announce, publish artifacts.

Each batch is keyed by the source's content key, or else by the flow run id and the batch's index, so a
retried task or flow run finds its earlier commits instead of writing them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger

from tasks.flow_tasks.outcome import BatchOutcome
from tasks.flow_tasks.prefect_tasks import check_staged, commit_staged, current_run_id, emit_committed
from tasks.flow_tasks.staging import StagedBatch, discard_run

from .artifacts import ProgressArtifact, artifact_key, publish_ingest

STEPS_PER_BATCH = 3  # check, commit, emit


@dataclass(frozen=True)
class IngestResult:
    """What an ingest flow run committed."""

    catalog: str
    project: str
    flow_run_id: str
    batches: list[BatchOutcome]
    events: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """A JSON-ready summary: per dataset, the snapshot and row counts."""
        return {
            "catalog": self.catalog,
            "project": self.project,
            "flow_run_id": self.flow_run_id,
            "datasets": [t.record() for batch in self.batches for t in batch.tables],
            "checks": [{"batch": b.idempotency_key, **vars(c)} for b in self.batches for c in b.checks],
            "rejections": [
                {"dataset": t.dataset, **vars(r)} for b in self.batches for t in b.tables for r in t.rejections
            ],
            "events": self.events,
        }


def commit_batches(
    catalog: str, project: str, batches: Iterable[StagedBatch], *, total: int, max_failure_rate: float
) -> IngestResult:
    """Check, commit and announce each staged batch in turn (`total`: how many there will be, for the
    progress artifact), then publish the run's artifacts and remove its staged files."""
    run_id = current_run_id()
    progress = ProgressArtifact(
        artifact_key(project, "ingest-progress"), total * STEPS_PER_BATCH, f"Batches ingested into {project}"
    )
    outcomes: list[BatchOutcome] = []
    emitted: list[str] = []
    for index, staged in enumerate(batches):
        key = staged.info.idempotency_key or f"{run_id}:{index}"
        outcome, events = commit_batch(catalog, project, staged, key, max_failure_rate, progress.step)
        outcomes.append(outcome)
        emitted += events
        get_run_logger().info("Batch %s of %s committed (key %s)", index + 1, total, key)
    publish_ingest(project, outcomes)
    discard_run(run_id)
    return IngestResult(catalog, project, run_id, outcomes, emitted)


def commit_batch(
    catalog: str,
    project: str,
    staged: StagedBatch,
    key: str,
    max_failure_rate: float,
    on_step: Callable[[], None] = lambda: None,
) -> tuple[BatchOutcome, list[str]]:
    """Check, commit and announce one staged batch under `key`; `on_step` after each of the three steps.
    BatchRejectedError, before anything is written, if a table fails the checks too often."""
    reports = check_staged(catalog, project, staged, max_failure_rate)
    on_step()
    outcome = commit_staged(catalog, project, staged, reports, key, max_failure_rate)
    on_step()
    emitted = emit_committed(outcome)
    on_step()
    return outcome, emitted

"""Ingest flows of the file sources beside Label Studio: COCO instances files and Labelbox exports."""

from __future__ import annotations

from prefect import flow

from tasks.flow_tasks.prefect_tasks import stage_coco, stage_labelbox

from .ingest import IngestResult, commit_batches
from .settings import DEFAULT_CATALOG, DEFAULT_PROJECT, MAX_FAILURE_RATE


@flow(name="ingest-coco", retries=1, retry_delay_seconds=2)
def ingest_coco(
    path: str,
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    image_dir: str | None = None,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Ingest a COCO instances file of a whole project (images read from `image_dir` when given); labels
    are checked against the file's categories, failing rows quarantined."""
    staged = stage_coco(path, image_dir)
    return commit_batches(catalog, project, [staged], total=1, max_failure_rate=max_failure_rate)


@flow(name="ingest-labelbox", retries=1, retry_delay_seconds=2)
def ingest_labelbox(
    path: str,
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    chunk_lines: int = 1000,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Ingest a Labelbox export v2 NDJSON file, `chunk_lines` data rows per batch; malformed lines are
    quarantined with their line number, the rest ingest."""
    staged = stage_labelbox(path, chunk_lines)
    return commit_batches(catalog, project, staged, total=len(staged), max_failure_rate=max_failure_rate)

"""Ingest a COCO instances file (and its image directory) into a project through the checks and quarantine."""

from __future__ import annotations

from pathlib import Path

from storage import Catalog

from ..commit import CommitOutcome, commit_changes
from .parse import SOURCE, parse_coco


def ingest_coco(
    catalog: Catalog,
    project: str,
    path: str | Path,
    *,
    image_dir: str | Path | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    whole_project: bool = True,
    max_failure_rate: float = 0.1,
) -> CommitOutcome:
    """Parse the file at `path` and commit it; labels are checked against the file's own categories."""
    path = Path(path)
    parsed = parse_coco(
        path.read_bytes(),
        name=path.name,
        image_dir=image_dir,
        source=source,
        flow_run_id=flow_run_id,
        whole_project=whole_project,
    )
    return commit_changes(
        catalog,
        project,
        parsed.changes,
        idempotency_key=parsed.idempotency_key,
        class_map=parsed.class_map,
        max_failure_rate=max_failure_rate,
        message=f"COCO {path.name}",
        source_rejects=parsed.rejects,
    )

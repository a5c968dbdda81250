"""Ingest a Labelbox NDJSON export into a project: chunk by chunk, each through the checks and quarantine."""

from __future__ import annotations

from pathlib import Path

from checks import ClassMap
from storage import Catalog

from ..commit import CommitOutcome, commit_changes
from .stream import DEFAULT_CHUNK_LINES, SOURCE, read_export_file


def ingest_export(
    catalog: Catalog,
    project: str,
    path: str | Path,
    *,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    class_map: ClassMap | None = None,
    max_failure_rate: float = 0.1,
) -> list[CommitOutcome]:
    """Commit every chunk of the export at `path`; one outcome per chunk. Malformed lines are quarantined.

    Each chunk commits with its own content-derived idempotency key, so re-running after a crash
    skips the chunks already committed and writes the rest.
    """
    return [
        commit_changes(
            catalog,
            project,
            chunk.changes,
            idempotency_key=chunk.idempotency_key,
            class_map=class_map,
            max_failure_rate=max_failure_rate,
            message=f"labelbox export {Path(path).name}, lines {chunk.first_line}-{chunk.last_line}",
            source_rejects=chunk.rejects,
        )
        for chunk in read_export_file(path, source=source, flow_run_id=flow_run_id, chunk_lines=chunk_lines)
    ]

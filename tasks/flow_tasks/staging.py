"""Parsed batches staged as files, so tasks pass a directory between them instead of tables.

A staged batch is one directory: an Arrow IPC file per canonical table (exact schemas, no inference on
the way back), `scopes.json` with the change set's deletion scopes and `source_rejects.json` with the
input the parser could not read. Staging is local to the process that runs the flow
(`$LABELHOUSE_STAGING_DIR`, default the system temp dir); a flow removes its run's directory when done.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from checks import ClassMap

from ..changes import TABLES, ChangeSet
from ..rejects import SourceReject

STAGING_ENV = "LABELHOUSE_STAGING_DIR"
_SCOPES = "scopes.json"
_SOURCE_REJECTS = "source_rejects.json"


@dataclass(frozen=True)
class SyncState:
    """Where a source got to (e.g. a pull watermark), committed after the batch's rows."""

    key: str  # which source and scope, e.g. `label-studio:http://host:8080/projects/3`
    value: str  # the source's own serialization (JSON)


@dataclass(frozen=True)
class BatchInfo:
    """What committing a batch needs besides its rows.

    `idempotency_key` is a content key when the source has one (the same export again commits nothing);
    without it the flow keys the batch by its run id and batch index.
    """

    source_ref: str
    idempotency_key: str | None = None
    class_map: ClassMap | None = None
    relation_labels: Collection[str] | None = None
    sync_state: SyncState | None = None
    properties: Mapping[str, str] = field(default_factory=dict)  # extra items-commit properties


@dataclass(frozen=True)
class ParsedBatch:
    """A source's change set in memory, the input it could not read, and its metadata."""

    changes: ChangeSet
    info: BatchInfo
    source_rejects: tuple[SourceReject, ...] = ()


@dataclass(frozen=True)
class StagedBatch:
    """A parsed batch on disk: its directory, the row count of each table, and its metadata."""

    directory: str
    rows: dict[str, int]
    info: BatchInfo


def staging_dir(run_id: str, batch: int) -> Path:
    """Where batch `batch` of run `run_id` is staged."""
    return run_root(run_id) / f"batch-{batch:05d}"


def staging_root() -> Path:
    """The directory holding a directory of staged batches per flow run."""
    return Path(os.environ.get(STAGING_ENV) or tempfile.gettempdir()) / "labelhouse-staging"


def run_root(run_id: str) -> Path:
    """The directory holding every staged batch of run `run_id`."""
    return staging_root() / run_id


def discard_run(run_id: str) -> None:
    """Remove a run's staged batches (once they are committed)."""
    shutil.rmtree(run_root(run_id), ignore_errors=True)


def discard_stale_runs(older_than: timedelta) -> list[str]:
    """Remove the staged batches of runs that wrote nothing for `older_than`; returns their run ids.

    A run that ends removes its own; these are what killed runs left behind (a rerun is a new flow run,
    with a directory of its own).
    """
    root = staging_root()
    cutoff = time.time() - older_than.total_seconds()
    stale = []
    for run in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            last_write = max(p.stat().st_mtime for p in [run, *run.rglob("*")])
        except FileNotFoundError:  # its run is removing it right now
            continue
        if last_write <= cutoff:
            shutil.rmtree(run, ignore_errors=True)
            stale.append(run.name)
    return stale


def stage_batch(batch: ParsedBatch, directory: Path) -> StagedBatch:
    """Write the batch into `directory` (replacing what an earlier attempt left there)."""
    changes = batch.changes
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for table in TABLES:
        rows: pa.Table = getattr(changes, table)
        with pa.OSFile(str(directory / f"{table}.arrow"), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as out:
            out.write_table(rows)
    scopes = {
        "whole_project": changes.whole_project,
        "replaced_items": list(changes.replaced_items),
        "replaced_submissions": list(changes.replaced_submissions),
        "deleted_items": list(changes.deleted_items),
    }
    (directory / _SCOPES).write_text(json.dumps(scopes), encoding="utf-8")
    rejects = [asdict(reject) for reject in batch.source_rejects]
    (directory / _SOURCE_REJECTS).write_text(json.dumps(rejects, ensure_ascii=False), encoding="utf-8")
    rows = {table: getattr(changes, table).num_rows for table in TABLES}
    return StagedBatch(directory=str(directory), rows=rows, info=batch.info)


def load_staged(staged: StagedBatch) -> ParsedBatch:
    """The batch `stage_batch` wrote; FileNotFoundError if the staging directory is gone."""
    directory = Path(staged.directory)
    tables = {}
    for table in TABLES:
        with pa.OSFile(str(directory / f"{table}.arrow")) as source:  # read into memory, not mapped
            tables[table] = pa.ipc.open_file(source).read_all()
    scopes = json.loads((directory / _SCOPES).read_text(encoding="utf-8"))
    changes = ChangeSet(
        **tables,
        whole_project=scopes["whole_project"],
        replaced_items=tuple(scopes["replaced_items"]),
        replaced_submissions=tuple(scopes["replaced_submissions"]),
        deleted_items=tuple(scopes["deleted_items"]),
    )
    rejects = json.loads((directory / _SOURCE_REJECTS).read_text(encoding="utf-8"))
    return ParsedBatch(changes, staged.info, tuple(SourceReject(**reject) for reject in rejects))

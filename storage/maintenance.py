"""validate() and vacuum(): end-to-end checks, and removal of files no snapshot references."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import changes as ch
from . import manifest as mf
from . import rollups
from .context import DatasetContext
from .errors import CorruptDatasetError, InvalidInputError, StorageError
from .formats import (
    CHANGES_DIR,
    DATA_DIR,
    DV_DIR,
    MANIFEST_DIR,
    RECORDS_DIR,
    TMP_PREFIX,
    TRACE_DIR,
    TRACES_PROP,
    log_name,
    utcnow,
)
from .records import RECORD_FILE


@dataclass(frozen=True)
class ValidationReport:
    """What validate() checked."""

    snapshots: int
    data_files: int
    deletion_vectors: int
    change_logs: int
    problems: list[str] = field(default_factory=list)


def referenced(ctx: DatasetContext) -> set[str]:
    """Every file a live snapshot needs: manifests, change logs, data and record files, deletion vectors,
    view join traces.

    Data files named by change logs (the old rows history() and diff() show) are kept with their records.
    """
    out: set[str] = set()
    via_changes: set[str] = set()
    for entry in ctx.log.entries():
        out.update(json.loads(entry.properties.get(TRACES_PROP, "{}")).values())
        if entry.manifest:
            out.add(entry.manifest)
            table = ctx.manifest(entry)
            out.update(table.column("path").to_pylist())
            out.update(p for p in table.column("dv").to_pylist() if p)
            out.update(p for files in table.column("records").to_pylist() for p in files or [])
        out.update(rollups.paths(entry))  # they name only files the logs they sum up name
        if entry.changes:
            out.add(entry.changes)
            changes = ch.read(ctx.store, entry.changes)
            real = changes.filter(pc.not_equal(changes.column("_change"), ch.MOVE))  # moves leave content as is
            for col in ("_old_file", "_new_file"):
                via_changes.update(p for p in pc.unique(real.column(col)).to_pylist() if p)
    for path in sorted(via_changes - out):
        out.add(path)
        if ctx.layout.record_fields and ctx.store.exists(path):
            out.update(record_files_of(ctx, path))
    return out


def record_files_of(ctx: DatasetContext, path: str) -> set[str]:
    """Record files a data file addresses."""
    fs, root = ctx.store.arrow_fs()
    column = pq.read_table(f"{root}/{path}", columns=[RECORD_FILE], filesystem=fs).column(RECORD_FILE)
    return {p for p in pc.unique(column).to_pylist() if p}


def validate(ctx: DatasetContext) -> ValidationReport:
    """Check every log entry parses and every referenced file exists with its recorded size and rows."""
    ctx.log.refresh()
    problems: list[str] = []
    data_files: dict[str, tuple[int, int]] = {}
    record_files: set[str] = set()
    dvs: dict[str, tuple[int, int]] = {}
    change_logs = 0
    entries = ctx.log.entries()
    for cached in entries:
        try:
            # Re-read everything from the store: caches would hide files damaged or deleted since.
            entry = ctx.log.load(cached.snapshot_id) or cached
            if entry.manifest:
                for row in mf.load(ctx.store, entry.manifest).to_pylist():
                    data_files[row["path"]] = (row["bytes"], row["rows"])
                    record_files.update(row["records"] or [])
                    if row["dv"]:
                        dvs[row["dv"]] = (row["dv_bytes"], row["rows"])
            if entry.changes:
                ch.load(ctx.store, entry.changes)
                change_logs += 1
            for rollup in rollups.paths(entry):
                ch.load(ctx.store, rollup)
        except StorageError as exc:
            problems.append(f"snapshot {cached.snapshot_id}: {exc}")
    for path, (size, rows) in sorted(data_files.items()):
        problems += _check_data_file(ctx, path, size, rows)
    for path, (size, rows) in sorted(dvs.items()):
        try:
            positions = mf.load_dv(ctx.store, path)
            if ctx.store.size(path) != size or (len(positions) and int(positions.max()) >= rows):
                problems.append(f"{path}: deletion vector size or positions do not match the manifest")
        except (StorageError, FileNotFoundError) as exc:
            problems.append(f"{path}: {exc}")
    problems += [f"{p}: record file is missing" for p in sorted(record_files) if not ctx.store.exists(p)]
    report = ValidationReport(len(entries), len(data_files), len(dvs), change_logs, problems)
    if problems:
        raise CorruptDatasetError(
            f"dataset {ctx.name!r} failed validation with {len(problems)} problem(s):\n  "
            + "\n  ".join(problems[:50])
            + "\nRestore the named files from a backup, or restore() an earlier snapshot that does not use them."
        )
    return report


def _check_data_file(ctx: DatasetContext, path: str, size: int, rows: int) -> list[str]:
    try:
        actual = ctx.store.size(path)
    except FileNotFoundError:
        return [f"{path}: data file is missing"]
    if actual != size:
        return [f"{path}: data file has {actual} bytes, the manifest records {size}"]
    fs, root = ctx.store.arrow_fs()
    try:
        meta = pq.read_metadata(f"{root}/{path}", filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        return [f"{path}: data file is not readable Parquet ({exc})"]
    if meta.num_rows != rows:
        return [f"{path}: data file has {meta.num_rows} rows, the manifest records {rows}"]
    return []


@dataclass(frozen=True)
class VacuumStats:
    """What vacuum() removed."""

    files_removed: int
    bytes_removed: int
    removed: list[str]


def vacuum(ctx: DatasetContext, grace: timedelta, dry_run: bool = False) -> VacuumStats:
    """Delete files no live snapshot references, if older than `grace` (so running writers keep theirs)."""
    ctx.log.refresh()
    keep = referenced(ctx)
    cutoff = time.time() - grace.total_seconds()
    removed: list[str] = []
    freed = 0
    for prefix in (DATA_DIR, DV_DIR, RECORDS_DIR, MANIFEST_DIR, CHANGES_DIR, TRACE_DIR, "_log", "_refs"):
        for info in ctx.store.list_files(prefix):
            leftover_tmp = info.path.rsplit("/", 1)[-1].startswith(TMP_PREFIX)
            if info.mtime > cutoff or (info.path in keep) or (prefix in ("_log", "_refs") and not leftover_tmp):
                continue
            removed.append(info.path)
            freed += info.size
            if not dry_run:
                ctx.store.delete(info.path)
    return VacuumStats(len(removed), freed, removed)


@dataclass(frozen=True)
class ExpireStats:
    """What expire() removed from the log."""

    expired: list[int]
    kept: int


def expire(ctx: DatasetContext, older_than: datetime | timedelta | None, keep_last: int | None) -> ExpireStats:
    """Forget snapshots older than `older_than` beyond the newest `keep_last` per branch.

    Branch heads, tagged snapshots, branch deletions and the newest log entry are always kept. Files the
    forgotten snapshots alone used are removed later by vacuum().
    """
    if older_than is None and keep_last is None:
        raise InvalidInputError("expire needs older_than= (a datetime or timedelta) and/or keep_last= (an int)")
    if keep_last is not None and keep_last < 1:
        raise InvalidInputError(f"keep_last must be at least 1, got {keep_last}")
    ctx.log.refresh()
    cutoff = None
    if older_than is not None:
        cutoff = utcnow() - older_than if isinstance(older_than, timedelta) else older_than
        if cutoff.tzinfo is None:
            cutoff = cutoff.astimezone()
    entries = ctx.log.entries()
    keep = {ctx.log.head, *ctx.tags.all().values()}
    keep.update(e.snapshot_id for e in entries if e.is_branch_delete)
    for head in ctx.log.branches().values():
        chain = ctx.log.chain(head)
        keep.update(e.snapshot_id for e in chain[: keep_last or 1])
    expired = []
    for e in entries:
        if e.snapshot_id in keep or (cutoff is not None and e.created_at >= cutoff):
            continue
        expired.append(e.snapshot_id)
    for sid in expired:
        ctx.store.delete(log_name(sid))
    ctx.log.forget(set(expired))
    return ExpireStats(expired, len(entries) - len(expired))

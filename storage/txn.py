"""Optimistic commits: prepare files, then publish one log entry on top of the head that was read.

If another commit won the race, the winners' change logs decide: disjoint keys rebase and retry (bounded,
with jitter); the same keys raise a conflict; operations that define themselves against the head (restore,
compaction) are prepared again.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import changes as ch
from . import dv, faults, rollups
from . import manifest as mf
from .context import DatasetContext
from .dv import Positions
from .errors import CommitConflictError, PrimaryKeyConflictError, StorageError, VersionNotFoundError
from .formats import utcnow
from .inputs import key_values
from .io import ObjectStore
from .lineage import ROLLUPS
from .log import LogEntry
from .pools import ForkSafePool
from .row_images import with_row_images

MAX_ATTEMPTS = 12


@dataclass
class Prepared:
    """A commit's files and intent, written before the commit entry exists."""

    operation: str
    added: pa.Table | None = None
    deletes: dict[str, Positions] = field(default_factory=dict)
    removes: set[str] = field(default_factory=set)
    changes: str | None = None
    touched: pa.Table | None = None  # key columns this commit changes, for conflict detection
    summary: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    # Files of `written` not stored yet (small metadata such as the change log): the commit stores them
    # together with its deletion vectors and manifest, so their syncs overlap, before the log entry.
    pending: dict[str, bytes] = field(default_factory=dict)
    replace_manifest: pa.Table | None = None
    # Operations defined against whatever the head is (restore, merge, compaction) adjust themselves to
    # the new head (base, head) instead of checking key conflicts.
    reprepare: Callable[[LogEntry, LogEntry], Prepared] | None = None


def _overlap(a: pa.Table, b: pa.Table) -> pa.Table:
    names = a.column_names
    if a.num_rows == 0 or b.num_rows == 0:
        return a.schema.empty_table()
    if len(names) == 1:
        return a.filter(pc.is_in(a.column(0), value_set=b.column(names[0])))
    return a.join(b.select(names), keys=names, join_type="inner").select(names)


def _winners(ctx: DatasetContext, base: LogEntry, head: LogEntry) -> list[LogEntry]:
    chain = ctx.log.chain(head)
    for i, entry in enumerate(chain):
        if entry.snapshot_id == base.snapshot_id:
            return list(reversed(chain[:i]))
    raise CommitConflictError(
        f"dataset {ctx.name!r}: branch {head.branch!r} no longer descends from snapshot {base.snapshot_id} "
        "this write was based on; re-read and retry"
    )


def _rebase(ctx: DatasetContext, prep: Prepared, base: LogEntry, head: LogEntry) -> Prepared:
    if prep.reprepare is not None:
        return prep.reprepare(base, head)
    head_files = set(ctx.manifest(head).column("path").to_pylist())
    winners = _winners(ctx, base, head)
    if set(prep.deletes) - head_files:
        prep.deletes = _follow_compactions(ctx, prep.deletes, winners)
    gone = sorted(set(prep.deletes) - head_files)
    for winner in winners:
        if prep.touched is None or winner.changes is None:
            continue
        theirs = ch.read(ctx.store, winner.changes)
        # A compaction's moves keep content: _follow_compactions carried this commit's deletions over.
        theirs = theirs.filter(pc.not_equal(theirs.column("_change"), ch.MOVE))
        keys = theirs.select(prep.touched.column_names)
        clash = _overlap(prep.touched, keys)
        if clash.num_rows == 0:
            continue
        values = key_values(clash)
        if prep.operation in ("append", "insert"):
            raise PrimaryKeyConflictError(ctx.name, values)
        raise CommitConflictError(
            f"dataset {ctx.name!r}: snapshot {winner.snapshot_id} ({winner.operation}) changed "
            f"{len(values)} of the same key(s) first: {values[:10]}; re-read and retry the {prep.operation}"
        )
    if gone:
        raise CommitConflictError(
            f"dataset {ctx.name!r}: data files this {prep.operation} deletes from were rewritten by a "
            f"concurrent commit ({gone[:3]}); retry the {prep.operation}"
        )
    return prep


def _follow_compactions(
    ctx: DatasetContext, deletes: dict[str, Positions], winners: list[LogEntry]
) -> dict[str, Positions]:
    """Move deletions from files a concurrent compaction rewrote to where it put those rows."""
    out = dict(deletes)
    for winner in winners:
        if winner.operation != "compact" or winner.changes is None:
            continue
        moves = ch.read(ctx.store, winner.changes)
        for path in [p for p in out if p in set(moves.column("_old_file").unique().to_pylist())]:
            positions = out.pop(path)
            mine = moves.filter(
                pc.and_(
                    pc.equal(moves.column("_old_file"), path), pc.is_in(moves.column("_old_pos"), pa.array(positions))
                )
            )
            for new_path, new_pos in group_by_file(mine.column("_new_file"), mine.column("_new_pos")).items():
                out[new_path] = dv.union(out.get(new_path, np.empty(0, np.int64)), new_pos)
    return out


def group_by_file(files: pa.ChunkedArray | pa.Array, positions: pa.ChunkedArray | pa.Array) -> dict[str, Positions]:
    """Sorted unique positions per file path."""
    if len(files) == 0:
        return {}
    arr = files.combine_chunks() if isinstance(files, pa.ChunkedArray) else files
    encoded = arr.dictionary_encode()
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    pos = np.asarray(positions.to_numpy(zero_copy_only=False), dtype=np.int64)
    return {str(p): dv.unique_sorted(pos[idx == i]) for i, p in enumerate(encoded.dictionary.to_pylist())}


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))


def commit(
    ctx: DatasetContext,
    branch: str,
    base: LogEntry,
    prep: Prepared,
    *,
    idempotency_key: str | None = None,
    message: str | None = None,
    properties: dict[str, str] | None = None,
) -> LogEntry:
    """Publish `prep` as the next snapshot of `branch`, rebasing over concurrent commits."""
    commit_id = uuid.uuid4().hex
    try:
        for attempt in range(MAX_ATTEMPTS):
            ctx.log.refresh()
            if idempotency_key is not None:
                existing = ctx.log.find(idempotency_key=idempotency_key)
                if existing is not None:
                    _discard(ctx, prep)
                    return existing
            head = ctx.log.branch_head(branch)
            if head is None:
                raise VersionNotFoundError(f"dataset {ctx.name!r}: branch {branch!r} does not exist")
            if head.snapshot_id != base.snapshot_id:
                prep = _rebase(ctx, prep, base, head)
                base = head
            entry = _publish(ctx, branch, head, prep, commit_id, idempotency_key, message, properties)
            if entry is not None:
                return entry
            _backoff(attempt)
    except BaseException:
        if not _may_have_landed(ctx, commit_id):
            _discard(ctx, prep)
        raise
    _discard(ctx, prep)
    raise CommitConflictError(
        f"dataset {ctx.name!r}: gave up after {MAX_ATTEMPTS} attempts; other writers kept committing first. "
        "Retry later or reduce write concurrency."
    )


def _publish(
    ctx: DatasetContext,
    branch: str,
    head: LogEntry,
    prep: Prepared,
    commit_id: str,
    idempotency_key: str | None,
    message: str | None,
    properties: dict[str, str] | None,
) -> LogEntry | None:
    vectors: dict[str, bytes] = {}
    if prep.replace_manifest is not None:
        table = prep.replace_manifest
    else:
        table, vectors = mf.apply(
            ctx.store, ctx.manifest(head), deletes=prep.deletes, removes=prep.removes, added=prep.added
        )
    manifest_path, manifest_data = mf.encode(table)
    snapshot_id = ctx.log.head + 1
    rolled = _rollups(ctx, head, prep, snapshot_id)
    extra = {**vectors, **dict(rolled.values())}  # this attempt's own files, beside the prepared ones
    try:
        store_all(ctx.store, {**prep.pending, **extra, manifest_path: manifest_data})
    except BaseException:
        for path in [manifest_path, *extra]:  # no entry names them yet; the pending ones are in `written`
            ctx.store.delete(path)
        raise
    prep.pending.clear()
    mf.remember(ctx.store, manifest_path, table, vectors)
    faults.checkpoint("commit.after_manifest")
    summary = {**prep.summary, "rows": mf.live_rows(table), "files": table.num_rows}
    summary["bytes_written"] = summary.get("bytes_written", 0) + sum(len(v) for v in extra.values())
    if rolled:
        summary[ROLLUPS] = {level: path for level, (path, _data) in rolled.items()}
    entry = LogEntry(
        snapshot_id=snapshot_id,
        parent_id=head.snapshot_id,
        branch=branch,
        created_at=utcnow(),
        operation=prep.operation,
        commit_id=commit_id,
        manifest=manifest_path,
        changes=prep.changes,
        message=message,
        properties=dict(properties or {}),
        idempotency_key=idempotency_key,
        summary=summary,
    )
    faults.checkpoint("commit.before_log")
    try:
        created = ctx.log.try_append(entry)
    except Exception:
        # The put may have landed before the error (a lost response): look for our own commit id.
        found = _own_commit(ctx, commit_id)
        if found is not None:
            return found
        raise
    if created:
        faults.checkpoint("commit.after_log")
        return entry
    for path in [manifest_path, *extra]:  # this attempt lost the race: its manifest, vectors and roll-ups are garbage
        ctx.store.delete(path)
    return None


def _rollups(ctx: DatasetContext, head: LogEntry, prep: Prepared, snapshot_id: int) -> dict[str, tuple[str, bytes]]:
    """rollups.build() for this attempt; none if a log cannot be read (a roll-up is only a shortcut)."""
    if not rollups.due(snapshot_id):
        return {}
    try:
        if prep.changes is None:
            return rollups.build(ctx, head, None, snapshot_id)
        data = prep.pending.get(prep.changes)  # pending on a first attempt, stored by an earlier one
        own = ch.decode(data) if data is not None else ch.load(ctx.store, prep.changes)
        return rollups.build(ctx, head, own, snapshot_id)
    except (StorageError, OSError):
        return {}


def _may_have_landed(ctx: DatasetContext, commit_id: str) -> bool:
    """Whether a failed commit's entry may exist: it is in the log, or the log cannot be read to tell.

    Only a commit known not to have landed may discard its files; otherwise they stay (vacuum() removes
    them if it did not land), since deleting them would break the snapshot of a put whose response was lost.
    """
    if ctx.log.find(commit_id=commit_id) is not None:
        return True
    try:
        return _own_commit(ctx, commit_id) is not None
    except Exception:
        return True


def _own_commit(ctx: DatasetContext, commit_id: str) -> LogEntry | None:
    """The log entry this commit attempt created, if a put whose outcome looked like a failure landed."""
    ctx.log.refresh()
    return ctx.log.find(commit_id=commit_id)


@contextmanager
def discarded_on_error(ctx: DatasetContext, prep: Prepared) -> Iterator[None]:
    """While a commit is prepared: on any error, remove the files it wrote so far, then re-raise."""
    try:
        yield
    except BaseException:
        _discard(ctx, prep)
        raise


def write_change_log(ctx: DatasetContext, prep: Prepared, parts: list[pa.Table]) -> pa.Table:
    """Store a prepared commit's change log (one file for all parts) and record it among its files."""
    table = pa.concat_tables(parts) if parts else ch.change_schema(ctx.key_schema).empty_table()
    store_change_log(ctx, prep, table)
    return table


def store_change_log(ctx: DatasetContext, prep: Prepared, table: pa.Table) -> None:
    """Make `table` (with row images if the dataset logs them) the commit's change log, stored at publish."""
    prep.changes, data = ch.encode(with_row_images(ctx, table))
    prep.pending[prep.changes] = data
    prep.written.append(prep.changes)


def store_all(store: ObjectStore, files: dict[str, bytes]) -> None:
    """Durably write independent files at once: their fsyncs overlap (a journaling file system commits
    concurrent syncs together) and object store puts run in parallel. Raises the first failure."""
    if len(files) < 2:
        for path, data in files.items():
            store.write_bytes(path, data)
        return
    futures = [_POOL.submit(store.write_bytes, path, data) for path, data in files.items()]
    wait(futures)  # every write settled before a failure is raised: the caller then deletes what was written
    for done in futures:
        done.result()


# Writer threads kept for the process: starting them per commit took longer than a small commit's writes.
_POOL = ForkSafePool(8, "lh-store")


def _discard(ctx: DatasetContext, prep: Prepared) -> None:
    """Best-effort removal of files a commit that did not land had written (vacuum catches the rest)."""
    for path in prep.written:
        ctx.store.delete(path)

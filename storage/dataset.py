"""The Dataset handle: writes, reads and versions of one dataset on one branch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from . import access, compaction, convert, history, maintenance, merge, scan, versions, writes
from .context import DatasetContext
from .errors import BranchExistsError, CommitConflictError, InvalidInputError, VersionNotFoundError
from .formats import encode_json, utcnow
from .inputs import key_table
from .log import BRANCH_CREATE, BRANCH_DELETE, LogEntry
from .naming import check_name
from .snapshot import Snapshot
from .sql import query as run_sql
from .txn import Prepared, commit
from .views.view import View

DEFAULT_BRANCH = "main"


def _check_properties(properties: dict[str, str] | None) -> dict[str, str] | None:
    if properties is None:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in properties.items()):
        raise InvalidInputError("commit properties must map strings to strings (use json.dumps for structures)")
    encode_json(properties)
    return properties


class Dataset:
    """A versioned table with primary keys. Reads and writes go to the handle's branch."""

    def __init__(self, ctx: DatasetContext, branch: str = DEFAULT_BRANCH) -> None:
        self._ctx = ctx
        self._branch = branch

    def __repr__(self) -> str:
        return f"Dataset({self._ctx.name!r}, branch={self._branch!r}, uri={self._ctx.store.uri!r})"

    @property
    def name(self) -> str:
        """The dataset's name in its catalog."""
        return self._ctx.name

    @property
    def branch_name(self) -> str:
        """The branch this handle reads and writes."""
        return self._branch

    @property
    def schema(self) -> pa.Schema:
        """The dataset's Arrow schema (all columns, record fields included)."""
        return self._ctx.meta.schema

    @property
    def primary_keys(self) -> list[str]:
        """Primary key columns."""
        return list(self._ctx.meta.primary_keys)

    @property
    def record_fields(self) -> list[str]:
        """Bulky columns, returned by reads only when asked for."""
        return list(self._ctx.meta.record_fields)

    # ----- writes -------------------------------------------------------------------------------------

    def _write(
        self,
        prepare: Any,
        idempotency_key: str | None,
        message: str | None,
        properties: dict[str, str] | None,
    ) -> Snapshot:
        ctx = self._ctx
        properties = _check_properties(properties)
        ctx.log.refresh()
        if idempotency_key is not None:
            done = ctx.log.find(idempotency_key=idempotency_key)
            if done is not None:
                return Snapshot.of(done)
        base = versions.branch_head(ctx, self._branch)
        prep: Prepared = prepare(base)
        entry = commit(
            ctx,
            self._branch,
            base,
            prep,
            idempotency_key=idempotency_key,
            message=message,
            properties=properties,
        )
        return Snapshot.of(entry)

    def append(
        self,
        data: Any,
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Add new rows (a table, batch, dict of lists or iterable of batches, streamed).

        Keys must be new: PrimaryKeyConflictError names the ones that exist and nothing is written.
        """
        return self._write(
            lambda base: writes.prepare_rows(self._ctx, base, data, "append"),
            idempotency_key,
            message,
            properties,
        )

    def insert(
        self,
        data: Any,
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Add rows whose keys must not exist; PrimaryKeyConflictError lists existing keys, writing nothing."""
        return self._write(
            lambda base: writes.prepare_rows(self._ctx, base, data, "insert"),
            idempotency_key,
            message,
            properties,
        )

    def upsert(
        self,
        data: Any,
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Insert rows, or replace whole rows whose primary key exists."""
        return self._write(
            lambda base: writes.prepare_rows(self._ctx, base, data, "upsert"),
            idempotency_key,
            message,
            properties,
        )

    def write_files(self, data: Any) -> list[dict[str, Any]]:
        """Write data (and record) files for `data` WITHOUT committing: for parallel writers such as Ray
        workers. Pass the returned descriptions (picklable dicts) to commit_files() in one driver."""
        return writes.write_files(self._ctx, data)

    def commit_files(
        self,
        files: Sequence[dict[str, Any]],
        mode: Literal["append", "insert", "upsert"] = "upsert",
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Commit files from write_files() (possibly from many processes) as ONE snapshot, with the same key
        checks as append/insert/upsert. Files of a commit that does not land are removed by vacuum()."""
        if mode not in ("append", "insert", "upsert"):
            raise InvalidInputError(f"mode must be 'append', 'insert' or 'upsert', got {mode!r}")
        staged = [dict(f) for f in files]
        return self._write(
            lambda base: writes.prepare_rows(self._ctx, base, None, mode, staged=staged),
            idempotency_key,
            message,
            properties,
        )

    def apply_changes(
        self,
        upserts: Any = None,
        delete_keys: Any = None,
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Upsert rows and delete keys in ONE snapshot (a sync of a source, a view refresh).

        A key both upserted and listed for deletion is upserted; absent delete keys are ignored.
        """
        rows = upserts if upserts is not None else self.schema.empty_table()
        return self._write(
            lambda base: writes.prepare_rows(self._ctx, base, rows, "apply", delete_keys),
            idempotency_key,
            message,
            properties,
        )

    def replace(
        self,
        data: Any,
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Make `data` (streamed, as for append) the whole content in ONE snapshot: new files replace the old.

        The change log records every key inserted, deleted or kept (kept keys as updates; diff() reports only
        those whose row changed). A concurrent commit does not fail a replace: it lands after it.
        """
        return self._write(
            lambda base: writes.prepare_replace(self._ctx, base, data), idempotency_key, message, properties
        )

    def delete(
        self,
        filter: pc.Expression | None = None,
        *,
        keys: Any = None,
        idempotency_key: str | None = None,
        message: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Snapshot:
        """Delete rows matching a filter expression, or by primary key values (absent keys are ignored)."""
        if filter is not None and not isinstance(filter, pc.Expression):
            raise InvalidInputError(
                f"delete filter must be a pyarrow.compute.Expression such as pc.field('id') == 8, got "
                f"{type(filter).__name__}; pass keys=[...] to delete by primary key"
            )
        return self._write(
            lambda base: writes.prepare_delete(self._ctx, base, filter, keys),
            idempotency_key,
            message,
            properties,
        )

    def restore(self, version: Any, message: str | None = None, properties: dict[str, str] | None = None) -> Snapshot:
        """A new snapshot on this branch whose content equals `version`; history is kept."""
        target = versions.resolve(self._ctx, self._branch, version)
        return self._write(lambda base: writes.prepare_restore(self._ctx, base, target), None, message, properties)

    # ----- reads --------------------------------------------------------------------------------------

    def _columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return [n for n in self.schema.names if n not in self._ctx.meta.record_fields]
        if isinstance(columns, str):
            raise InvalidInputError(f"columns must be a list of names, got the string {columns!r}")
        unknown = [c for c in columns if c not in self.schema.names]
        if unknown:
            raise InvalidInputError(f"unknown column(s) {unknown}; dataset columns are {self.schema.names}")
        return list(columns)

    def _check_filter(self, filter: Any) -> pc.Expression | None:
        if filter is not None and not isinstance(filter, pc.Expression):
            raise InvalidInputError(
                f"filter must be a pyarrow.compute.Expression such as pc.field('label') == 'cat', got "
                f"{type(filter).__name__}"
            )
        return filter

    def snapshot(self, version: Any = None) -> Snapshot:
        """The snapshot a version argument names (default: this branch's head)."""
        return Snapshot.of(versions.resolve(self._ctx, self._branch, version))

    def read(
        self,
        filter: pc.Expression | None = None,
        columns: Sequence[str] | None = None,
        version: Any = None,
        batch_size: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a version as record batches (at most `batch_size` rows each)."""
        cols = self._columns(columns)
        flt = self._check_filter(filter)
        if batch_size is not None and batch_size <= 0:
            raise InvalidInputError(f"batch_size must be positive, got {batch_size}")
        snap = self._ctx.files(versions.resolve(self._ctx, self._branch, version))
        for _path, batch in scan.file_batches(snap, cols, flt, batch_size):
            yield batch

    def read_all(
        self, filter: pc.Expression | None = None, columns: Sequence[str] | None = None, version: Any = None
    ) -> pa.Table:
        """All rows of a version as one table."""
        cols = self._columns(columns)
        schema = pa.schema([self.schema.field(c) for c in cols])
        batches = list(self.read(filter, cols, version))
        return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()

    def files(self, filter: pc.Expression | None = None, version: Any = None) -> list[str]:
        """Data files a read with `filter` would open: the manifest's files left after min/max pruning."""
        snap = self._ctx.files(versions.resolve(self._ctx, self._branch, version))
        return scan.pruned_files(snap, self._check_filter(filter))

    def count(self, filter: pc.Expression | None = None, version: Any = None) -> int:
        """Number of rows (matching `filter`) in a version."""
        snap = self._ctx.files(versions.resolve(self._ctx, self._branch, version))
        return scan.count(snap, self._check_filter(filter))

    def take(self, keys: Any, columns: Sequence[str] | None = None, version: Any = None) -> pa.Table:
        """Rows by primary key, in the order the keys are given; absent keys are skipped."""
        cols = self._columns(columns)
        wanted = key_table(keys, self.schema, self.primary_keys)
        snap = self._ctx.files(versions.resolve(self._ctx, self._branch, version))
        schema = pa.schema([self.schema.field(c) for c in cols])
        if wanted.num_rows == 0:
            return schema.empty_table()
        need = list(dict.fromkeys([*self.primary_keys, *cols]))
        # Not exact: the join below matches keys, and for many keys a range filter plus the join is cheaper.
        flt = scan.key_filter(wanted, exact=False)
        parts = [pa.Table.from_batches([b]) for _p, b in scan.file_batches(snap, need, flt)]
        if not parts:
            return schema.empty_table()
        found = pa.concat_tables(parts)
        # Join only keys and row numbers: Arrow's join cannot carry struct or list columns along.
        found_idx = found.select(self.primary_keys).append_column(
            "_lh_found", pa.array(range(found.num_rows), pa.int64())
        )
        order = wanted.append_column("_lh_order", pa.array(range(wanted.num_rows), pa.int64()))
        pairs = found_idx.join(order, keys=self.primary_keys, join_type="inner").sort_by("_lh_order")
        return found.take(pairs.column("_lh_found")).select(cols).cast(schema)

    # ----- training and analytics ---------------------------------------------------------------------
    # Each of these resolves `version` once and reads that snapshot only. Their `columns` default to every
    # column, record fields included: training and exports want the blobs.

    def _pinned(self, version: Any) -> tuple[int, scan.SnapshotFiles]:
        entry = versions.resolve(self._ctx, self._branch, version)
        return entry.snapshot_id, self._ctx.files(entry)

    def random_access(
        self,
        columns: Sequence[str] | None = None,
        version: Any = None,
        cache_bytes: int = access.DEFAULT_CACHE_BYTES,
    ) -> access.RandomAccess:
        """Rows of a version by index: len(), [i] and __getitems__([i, ...]) give dicts, in a stable order.

        A PyTorch map-style dataset and a Grain data source as is, and picklable for worker processes.
        `cache_bytes` bounds the Parquet row groups of index columns kept in memory per process.
        """
        cols = self.schema.names if columns is None else self._columns(columns)
        snapshot_id, snap = self._pinned(version)
        return access.random_access(snap, snapshot_id, cols, cache_bytes)

    def sql(self, query: str, version: Any = None) -> pa.Table:
        """Run a DuckDB query that reads this dataset under its name (record fields are not exposed)."""
        return run_sql({self.name: self._pinned(version)[1]}, query)

    def to_huggingface(self, version: Any = None, cache_dir: str | None = None) -> Any:
        """A `datasets.Dataset` of a version, blobs included, memory-mapped from a cache file (needs [hf])."""
        return convert.to_huggingface(self._pinned(version)[1], cache_dir)

    def to_ray(self, version: Any = None, columns: Sequence[str] | None = None) -> Any:
        """A `ray.data.Dataset` of a version, read in parallel, one task per data file (needs [ray])."""
        cols = self.schema.names if columns is None else self._columns(columns)
        return convert.to_ray(self._pinned(version)[1], cols)

    def to_torch(self, columns: Sequence[str] | None = None, version: Any = None, transform: Any = None) -> Any:
        """A `torch.utils.data.Dataset` over random_access(), each row passed through `transform` (needs [torch])."""
        return convert.to_torch(self.random_access(columns, version), transform)

    # ----- versions -----------------------------------------------------------------------------------

    def versions(self) -> pa.Table:
        """Every live snapshot of the dataset (all branches), oldest first."""
        ctx = self._ctx
        ctx.log.refresh()
        tags: dict[int, list[str]] = {}
        for name, sid in ctx.tags.all().items():
            tags.setdefault(sid, []).append(name)
        rows = [
            {
                "snapshot_id": e.snapshot_id,
                "parent_id": e.parent_id,
                "branch": e.branch,
                "created_at": e.created_at,
                "operation": e.operation,
                "tags": sorted(tags.get(e.snapshot_id, [])),
                "message": e.message,
                "properties": encode_json(e.properties).decode(),
                "summary": encode_json(e.summary).decode(),
            }
            for e in ctx.log.entries()
        ]
        schema = pa.schema(
            [
                pa.field("snapshot_id", pa.int64()),
                pa.field("parent_id", pa.int64()),
                pa.field("branch", pa.string()),
                pa.field("created_at", pa.timestamp("us", tz="UTC")),
                pa.field("operation", pa.string()),
                pa.field("tags", pa.list_(pa.string())),
                pa.field("message", pa.string()),
                pa.field("properties", pa.string()),
                pa.field("summary", pa.string()),
            ]
        )
        return pa.Table.from_pylist(rows, schema=schema)

    def tag(self, name: str, version: Any = None, force: bool = False) -> Snapshot:
        """Name a snapshot (default: this branch's head). Tags are immutable unless force=True."""
        check_name(name, "tag")
        if self._ctx.log.branch_head(name) is not None:
            raise InvalidInputError(f"{name!r} is a branch name; pick a tag name that is not a branch")
        entry = versions.resolve(self._ctx, self._branch, version)
        self._ctx.tags.set(name, entry.snapshot_id, force=force)
        return Snapshot.of(entry)

    def untag(self, name: str) -> None:
        """Remove a tag; VersionNotFoundError if there is none."""
        if not self._ctx.tags.delete(check_name(name, "tag")):
            raise VersionNotFoundError(f"dataset {self.name!r} has no tag {name!r}")

    def tags(self) -> dict[str, int]:
        """Tag names and the snapshot ids they name."""
        return self._ctx.tags.all()

    def manifest(self, version: Any = None) -> pa.Table:
        """One row per live data file: path, rows, deleted rows, bytes, deletion vector, min/max per column."""
        return self._ctx.manifest(versions.resolve(self._ctx, self._branch, version))

    # ----- branches -----------------------------------------------------------------------------------

    def create_branch(self, name: str, from_version: Any = None) -> Dataset:
        """Start a branch at a version (default: this branch's head) and return its handle."""
        check_name(name, "branch")
        ctx = self._ctx
        if name in ctx.tags.all():
            raise InvalidInputError(f"{name!r} is a tag name; pick a branch name that is not a tag")
        source = versions.resolve(ctx, self._branch, from_version)
        while True:
            ctx.log.refresh()
            if ctx.log.branch_head(name) is not None:
                raise BranchExistsError(f"dataset {self.name!r} already has a branch {name!r}")
            entry = LogEntry(
                snapshot_id=ctx.log.head + 1,
                parent_id=source.snapshot_id,
                branch=name,
                created_at=utcnow(),
                operation=BRANCH_CREATE,
                commit_id=uuid.uuid4().hex,
                manifest=source.manifest,
                summary={
                    **{k: v for k, v in source.summary.items() if k in ("rows", "files")},
                    "from_branch": source.branch,
                    "from_snapshot": source.snapshot_id,
                },
            )
            if ctx.log.try_append(entry):
                return Dataset(ctx, name)

    def branch(self, name: str) -> Dataset:
        """A handle on another branch of this dataset."""
        self._ctx.log.refresh()
        versions.branch_head(self._ctx, check_name(name, "branch"))
        return Dataset(self._ctx, name)

    def branches(self) -> dict[str, int]:
        """Branch names and their head snapshot ids."""
        self._ctx.log.refresh()
        return {b: e.snapshot_id for b, e in sorted(self._ctx.log.branches().items())}

    def delete_branch(self, name: str) -> None:
        """Delete a branch (its snapshots stay reachable by id and tag until expired)."""
        if name == DEFAULT_BRANCH:
            raise InvalidInputError(f"the {DEFAULT_BRANCH!r} branch cannot be deleted")
        ctx = self._ctx
        while True:
            ctx.log.refresh()  # a fresh handle has read no log yet; after a lost race, read the winner
            head = versions.branch_head(ctx, check_name(name, "branch"))
            entry = LogEntry(
                snapshot_id=ctx.log.head + 1,
                parent_id=head.snapshot_id,
                branch=name,
                created_at=utcnow(),
                operation=BRANCH_DELETE,
                commit_id=uuid.uuid4().hex,
            )
            if ctx.log.try_append(entry):
                return

    def merge(
        self, source: str, strategy: Literal["ours", "theirs"] | None = None, message: str | None = None
    ) -> Snapshot:
        """Merge branch (or version) `source` into this branch as one snapshot.

        Fast-forwards when this branch has not moved since the fork; otherwise merges per primary key from
        the common ancestor. Keys changed differently on both sides raise MergeConflictError unless
        `strategy` picks a side. Returns this branch's head unchanged when there is nothing to merge.
        """
        if strategy not in (None, "ours", "theirs"):
            raise InvalidInputError(f"strategy must be None, 'ours' or 'theirs', got {strategy!r}")
        ctx = self._ctx
        src = versions.resolve(ctx, self._branch, source)
        base = versions.branch_head(ctx, self._branch)

        def prepare(target: LogEntry) -> Prepared | None:
            prep = merge.prepare_merge(ctx, target, src, str(source), strategy)
            if prep is not None:
                prep.reprepare = lambda _base, head: _redo(ctx, prep, lambda: prepare(head))
            return prep

        prep = prepare(base)
        if prep is None:
            return Snapshot.of(base)
        return Snapshot.of(commit(ctx, self._branch, base, prep, message=message))

    # ----- views --------------------------------------------------------------------------------------

    def map_batches(
        self,
        fn: Any,
        output_schema: pa.Schema | None = None,
        record_fields: Sequence[str] | None = None,
        version: str = "1",
    ) -> View:
        """A view applying fn(pa.Table) -> table to this dataset's rows (see View.map_batches)."""
        return View.of(self).map_batches(fn, output_schema, record_fields, version)

    def filter(self, fn: Any, version: str = "1") -> View:
        """A view of the rows for which fn(pa.Table) returns true (see View.filter)."""
        return View.of(self).filter(fn, version)

    def join(self, other: Dataset | View, on: Sequence[str], how: str = "inner") -> View:
        """A view joining each row to `other`'s row whose primary key equals `on` (see View.join)."""
        return View.of(self).join(other, on, how)

    # ----- change data --------------------------------------------------------------------------------

    def diff(self, start: Any, end: Any = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Net row changes from version `start` to `end` (default: this branch's head), any two versions.

        Rows carry `_change_type` in {insert, delete, update_preimage, update_postimage}; a key inserted
        and deleted within the range does not appear; `start` after `end` gives the reverse diff. It lists
        inserts, deletes, then updated rows' pre-images and, in the same key order, their post-images, as one
        iter_diff() part covering every changed key would (each part costs a pass of its own).
        """
        cols = self._columns(columns)
        parts = list(self._diff_parts(start, end, cols, None))
        return parts[0] if parts else history.diff_schema(self._ctx, cols).empty_table()

    def iter_diff(
        self, start: Any, end: Any = None, columns: Sequence[str] | None = None, batch_size: int = 65_536
    ) -> Iterator[pa.Table]:
        """diff() as a stream of tables covering at most `batch_size` changed keys each (bounded memory).

        It holds one batch's rows and, for the whole range, some tens of bytes per change (keys and row
        locations). Row images of more than four batches' rows stay where the change logs keep them,
        memory-mapped on a local store (fewer are copied into one array, which reads faster); logs of more
        than 16,384 changes, and every log on an object store, are held in memory while it runs.
        """
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        return self._diff_parts(start, end, self._columns(columns), batch_size)

    def _diff_parts(self, start: Any, end: Any, columns: list[str], batch_size: int | None) -> Iterator[pa.Table]:
        a = versions.resolve(self._ctx, self._branch, start)
        b = versions.resolve(self._ctx, self._branch, end)
        return history.iter_diff(self._ctx, a, b, columns, batch_size)

    def history(self, key: Any, columns: Sequence[str] | None = None) -> pa.Table:
        """Every state of one row on this branch, newest first: `_snapshot_id`, `_committed_at`,
        `_change_type` (insert/update/delete; a delete shows the row as it was), `_message`, `_properties`
        and the row's columns. Reads only change logs and the data files that held the key (none for states
        the change logs hold as row images, see WriteOptions.log_row_images)."""
        head = versions.resolve(self._ctx, self._branch, None)  # refreshes the log first
        return history.history(self._ctx, head, key, self._columns(columns))

    # ----- maintenance --------------------------------------------------------------------------------

    def validate(self) -> maintenance.ValidationReport:
        """Check the whole dataset; CorruptDatasetError lists every problem found."""
        return maintenance.validate(self._ctx)

    def compact(self, target_rows: int | None = None, max_deleted_fraction: float = 0.2) -> Snapshot:
        """Rewrite small files and files with many deleted rows into target-size files (same content).

        Returns the new snapshot, or the current head when nothing needed compacting.
        """
        ctx = self._ctx
        ctx.log.refresh()  # a freshly opened handle has read no log yet; a long-lived one may be behind
        base = versions.branch_head(ctx, self._branch)
        prep = compaction.prepare_compact(ctx, base, target_rows, max_deleted_fraction)
        if prep is None:
            return Snapshot.of(base)
        return Snapshot.of(commit(ctx, self._branch, base, prep, message="compact"))

    def expire(
        self, older_than: datetime | timedelta | None = None, keep_last: int | None = None
    ) -> maintenance.ExpireStats:
        """Forget old snapshots (branch heads and tagged snapshots are kept); vacuum() then frees their files."""
        return maintenance.expire(self._ctx, older_than, keep_last)

    def vacuum(self, grace_period: timedelta = timedelta(hours=1), dry_run: bool = False) -> maintenance.VacuumStats:
        """Remove files no live snapshot references and older than `grace_period`."""
        return maintenance.vacuum(self._ctx, grace_period, dry_run)


def _redo(ctx: DatasetContext, stale: Prepared, prepare: Any) -> Prepared:
    """Throw away a stale prepared commit and prepare it again against a new head."""
    for path in stale.written:
        ctx.store.delete(path)
    fresh: Prepared | None = prepare()
    if fresh is None:
        raise CommitConflictError("a concurrent commit already applied everything this merge would; nothing to do")
    return fresh

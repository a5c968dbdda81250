"""The fault matrix: every write operation, with each fault injected at each store call it makes.

A *world* is a small catalog built once per backend (a dataset with several files, deletion vectors and a
`dev` branch, a materialized view and a vector index over it) together with an in-memory model of every
snapshot's content. Each trial clones the world, opens it through a FaultyStore, runs one operation with
one fault armed, and then checks, through a fresh catalog that shares no cache with the writer:

- the operation returned, or raised a StorageError or OSError (anything else is a crash);
- it landed at most once, and if it raised, a retry without faults lands it exactly once;
- every dataset passes validate(), and its content at every new snapshot equals the model;
- views equal their function applied to the source version they claim to reflect, and the vector
  index holds exactly the reflected source rows.

A variant world's dataset logs row images (WriteOptions.log_row_images), so diff() reads rows from the change
logs: there, the diff from the world's head to every new snapshot must equal the model's too.

Which calls exist is learned on a dry run (`record_calls`), so new engine steps are covered automatically.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from faulty_store import (
    APPLIES_TO,
    MUTATING,
    Call,
    ErrorFactory,
    Fault,
    FaultPlan,
    Op,
    Rule,
    local_error,
    record_calls,
    s3_error,
)

from storage import Catalog, Dataset, MaterializedView, StorageError, VectorIndex, WriteOptions
from storage.io import open_store

Row = dict[str, Any]
Content = dict[int, Row]  # primary key -> row

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("label", pa.string()),
        ("score", pa.int64()),
        ("blob", pa.binary()),  # a record field: written with put_file into ArrayRecord files
        ("vec", pa.list_(pa.float32())),
    ]
)
VIEW_SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("label", pa.string()), ("score2", pa.int64())])
DS, VIEW, INDEX, NEW_VIEW = "ds", "ds_mv", "ds_idx", "ds_mv2"
DEV = "dev"
RACE_KEY = "race"  # idempotency-key prefix of the commits a concurrent writer makes during a LATENCY fault


def row(key: int, tag: int = 0) -> Row:
    """A row whose every column depends on (key, tag), so any mix-up of rows shows in a comparison."""
    return {
        "id": key,
        "label": f"l{key % 3}",
        "score": key * 10 + tag,
        "blob": f"blob-{key}-{tag}".encode(),
        # Distinct directions per key, so an exact l2 search finds each row's own vector first.
        "vec": [float(key), float(key % 7), 1.0, float(tag)],
    }


def rows(keys: range | list[int], tag: int = 0) -> list[Row]:
    return [row(k, tag) for k in keys]


def table(data: list[Row]) -> pa.Table:
    return pa.Table.from_pylist(data, schema=SCHEMA)


def view_fn(t: pa.Table) -> pa.Table:
    """The materialized view's function (module-level, so the view stores it by import path)."""
    return pa.table(
        {"id": t.column("id"), "label": pc.utf8_upper(t.column("label")), "score2": pc.multiply(t.column("score"), 2)},
        schema=VIEW_SCHEMA,
    )


def view_model(content: Content) -> Content:
    """view_fn on model rows."""
    return {
        k: {"id": k, "label": r["label"].upper() if r["label"] is not None else None, "score2": r["score"] * 2}
        for k, r in content.items()
    }


def three_way(ancestor: Content, ours: Content, theirs: Content) -> Content:
    """A merge without conflicts: keys `theirs` changed since the ancestor take its state, others keep ours."""
    out = dict(ours)
    for key in ancestor.keys() | theirs.keys():
        if ancestor.get(key) != theirs.get(key):
            if key in theirs:
                out[key] = theirs[key]
            else:
                out.pop(key, None)
    return out


# ----- backends --------------------------------------------------------------------------------------


@dataclass
class Backend:
    """Where trial catalogs live: fresh roots, cheap clones of a built world, and the errors the store raises."""

    name: str
    error: ErrorFactory
    options: dict[str, Any]
    fresh_root: Callable[[], str]
    clone: Callable[[str, tuple[str, ...]], str]  # (root, top-level names to copy) -> new root

    def catalog(self, root: str, plan: FaultPlan | None = None) -> Catalog:
        """A catalog on `root`, through a FaultyStore of `plan` (a fresh, rule-less plan if None).

        Always wrapped: a new plan gives the store a new identity, so nothing is answered from the
        engine's per-process caches of another catalog object (a reader must see what is stored).
        """
        return Catalog(root, wrap_store=(plan or FaultPlan()).wrap, **self.options)


def local_backend(base: Path) -> Backend:
    """Catalogs in directories under `base`; a clone is a directory copy (relative paths make it valid)."""
    counter = itertools.count()

    def fresh_root() -> str:
        return str(base / f"cat-{next(counter)}")

    def clone(root: str, names: tuple[str, ...]) -> str:
        target = fresh_root()
        os.makedirs(target)
        for name in names:
            src = os.path.join(root, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(target, name))
        return target

    return Backend("local", local_error, {}, fresh_root, clone)


def s3_backend(bucket: str, options: dict[str, Any], client: Any) -> Backend:
    """Catalogs under prefixes of one bucket; a clone is a server-side copy of every object."""
    counter = itertools.count()

    def fresh_root() -> str:
        return f"s3://{bucket}/cat-{next(counter)}-{uuid.uuid4().hex[:6]}"

    def clone(root: str, names: tuple[str, ...]) -> str:
        target = fresh_root()
        src, dst = root.removeprefix(f"s3://{bucket}/"), target.removeprefix(f"s3://{bucket}/")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{src}/"):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(src) + 1 :]
                if rel.split("/", 1)[0] in names:
                    client.copy_object(
                        Bucket=bucket, Key=f"{dst}/{rel}", CopySource={"Bucket": bucket, "Key": obj["Key"]}
                    )
        return target

    return Backend("s3", s3_error, options, fresh_root, clone)


# ----- the world ---------------------------------------------------------------------------------------


@dataclass
class World:
    """A built catalog and the model of its `ds` dataset: content per snapshot id, and branch facts."""

    backend: Backend
    root: str
    versions: dict[int, Content]
    main_head: int
    dev_head: int
    fork: int  # where `dev` left `main`: the merge's common ancestor
    row_images: bool = False  # `ds` logs row images in its change logs

    @property
    def head(self) -> Content:
        return self.versions[self.main_head]

    @property
    def label(self) -> str:
        """The backend as the report names it (the row-image variant is a backend row of its own)."""
        return f"{self.backend.name}, row images" if self.row_images else self.backend.name


def build_world(backend: Backend, views: bool = True, row_images: bool = False) -> World:
    """Build the world every trial of a backend starts from: a handful of commits, and unless `views` is
    false, a materialized view and a vector index (which mv_refresh and index_refresh need). With
    `row_images`, `ds` logs row images (WriteOptions.log_row_images)."""
    root = backend.fresh_root()
    cat = Catalog(root, **backend.options)
    options = WriteOptions(max_rows_per_file=4, log_row_images=row_images)
    ds = cat.create_dataset(DS, SCHEMA, ["id"], ["blob"], options=options)
    versions: dict[int, Content] = {0: {}}
    state: Content = {}

    def commit(snapshot_id: int, new_state: Content) -> Content:
        versions[snapshot_id] = new_state
        return new_state

    state = commit(ds.append(table(rows(range(12)))).id, {r["id"]: r for r in rows(range(12))})
    state = commit(ds.upsert(table(rows([2, 3], tag=1))).id, {**state, **{r["id"]: r for r in rows([2, 3], 1)}})
    state = commit(ds.delete(keys=[5, 6, 7]).id, {k: r for k, r in state.items() if k not in (5, 6, 7)})
    fork = ds.snapshot().id
    dev = ds.create_branch(DEV)
    dev_state = dict(state)
    versions[dev.snapshot().id] = dict(dev_state)
    dev_state = commit(dev.upsert(table(rows([8], tag=2))).id, {**dev_state, 8: row(8, 2)})
    dev_state = commit(dev.append(table(rows([50, 51]))).id, {**dev_state, 50: row(50), 51: row(51)})
    state = commit(ds.append(table(rows([12, 13]))).id, {**state, 12: row(12), 13: row(13)})
    if views:
        cat.materialize(VIEW, ds.map_batches(view_fn, output_schema=VIEW_SCHEMA))
        cat.create_vector_index(INDEX, source=ds, column="vec", metric="l2sq")
    # Sources move on after the view and the index were built, so their refresh has work to do.
    state = commit(ds.append(table(rows([14, 15]))).id, {**state, 14: row(14), 15: row(15)})
    world = World(backend, root, versions, ds.snapshot().id, dev.snapshot().id, fork, row_images)
    check_world(world)
    return world


def content(ds: Dataset, version: int | None = None) -> tuple[Content, int]:
    """A dataset version as {key: row}, record fields included, and how many rows repeated a key."""
    got = ds.read_all(columns=ds.schema.names, version=version).to_pylist()
    keyed = {r["id"]: r for r in got}
    return keyed, len(got) - len(keyed)


def check_world(world: World) -> None:
    """The engine agrees with the model on the freshly built world (so later differences are the fault's)."""
    ds = world.backend.catalog(world.root).dataset(DS)
    for sid, expected in world.versions.items():
        assert content(ds, sid) == (expected, 0), f"world snapshot {sid} differs from the model"
        if world.row_images:
            assert stored_diff(ds, world.main_head, sid) == model_diff(world.head, expected), f"diff to {sid}"


def _frozen(r: Row) -> tuple[tuple[str, Any], ...]:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(r.items()))


def model_diff(start: Content, end: Content) -> Counter[tuple[str, Any]]:
    """diff() of the model: (change type, row) pairs from `start` to `end`."""
    out: Counter[tuple[str, Any]] = Counter()
    for key in start.keys() | end.keys():
        if key not in start:
            out[("insert", _frozen(end[key]))] += 1
        elif key not in end:
            out[("delete", _frozen(start[key]))] += 1
        elif start[key] != end[key]:
            out[("update_preimage", _frozen(start[key]))] += 1
            out[("update_postimage", _frozen(end[key]))] += 1
    return out


def stored_diff(ds: Dataset, start: int, end: int) -> Counter[tuple[str, Any]]:
    """What ds.diff() says changed from `start` to `end`, as model_diff() shapes it."""
    changed = ds.diff(start, end, columns=ds.schema.names).to_pylist()
    return Counter((r.pop("_change_type"), _frozen(r)) for r in changed)


# ----- operations ---------------------------------------------------------------------------------------


class Handles:
    """What an operation works on: the catalog (through the FaultyStore) and its objects, opened on first use."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @cached_property
    def ds(self) -> Dataset:
        return self.catalog.dataset(DS)

    @cached_property
    def mv(self) -> MaterializedView:
        return self.catalog.materialized_view(VIEW)

    @cached_property
    def index(self) -> VectorIndex:
        return self.catalog.vector_index(INDEX)

    def open(self, operation: Operation) -> Handles:
        """Open what `operation` uses before faults are armed (opening is not the operation)."""
        for name in operation.opens:
            getattr(self, name)
        return self


@dataclass(frozen=True)
class Operation:
    """One write operation of the matrix.

    `apply` is the model of its effect on `ds` main (given the world and the content it lands on);
    `operation` is the log's name for its commit (None: it commits nothing to `ds`). `prepare` runs
    without faults before the trial (vacuum needs something expired to remove).
    """

    name: str
    run: Callable[[Handles], Any]
    operation: str | None
    apply: Callable[[World, Content], Content] = lambda _w, c: c
    idempotency_key: str | None = None
    prepare: Callable[[Catalog], Any] | None = None
    target: str = DS  # the dataset whose content the checks compare (a view's name for view operations)
    races: bool = True  # whether a concurrent commit during a slow call is a valid scenario
    opens: tuple[str, ...] = ("ds",)  # Handles attributes the operation uses
    old_snapshots: bool = False  # whether it may remove files: then every live old snapshot is re-read

    @property
    def clone_names(self) -> tuple[str, ...]:
        """What a trial copies of the world: the catalog file, `ds`, and the view or index it works on."""
        return ("_catalog.json", DS, *((self.target,) if self.target in (VIEW, INDEX) else ()))


def _upsert_model(new: list[Row]) -> Callable[[World, Content], Content]:
    return lambda _w, c: {**c, **{r["id"]: r for r in new}}


APPEND_ROWS, INSERT_ROWS, UPSERT_ROWS = rows(range(100, 105)), rows([200, 201]), [row(0, 3), row(9, 3), row(300)]
DELETE_KEYS = [1, 4, 10]
RESTORE_TO = 1

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        Operation(
            "append",
            lambda h: h.ds.append(table(APPEND_ROWS), idempotency_key="op"),
            "append",
            _upsert_model(APPEND_ROWS),
            "op",
        ),
        Operation(
            "insert",
            lambda h: h.ds.insert(table(INSERT_ROWS), idempotency_key="op"),
            "insert",
            _upsert_model(INSERT_ROWS),
            "op",
        ),
        Operation(
            "upsert",
            lambda h: h.ds.upsert(table(UPSERT_ROWS), idempotency_key="op"),
            "upsert",
            _upsert_model(UPSERT_ROWS),
            "op",
        ),
        Operation(
            "delete",
            lambda h: h.ds.delete(keys=DELETE_KEYS, idempotency_key="op"),
            "delete",
            lambda _w, c: {k: r for k, r in c.items() if k not in DELETE_KEYS},
            "op",
        ),
        Operation("restore", lambda h: h.ds.restore(RESTORE_TO), "restore", lambda w, _c: w.versions[RESTORE_TO]),
        Operation(
            "merge",
            lambda h: h.ds.merge(DEV),
            "merge",
            lambda w, c: three_way(w.versions[w.fork], c, w.versions[w.dev_head]),
        ),
        Operation("compact", lambda h: h.ds.compact(target_rows=8), "compact"),
        Operation("expire", lambda h: h.ds.expire(keep_last=1), None, old_snapshots=True),
        Operation(
            "vacuum",
            lambda h: h.ds.vacuum(grace_period=timedelta(0)),
            None,
            prepare=lambda cat: cat.dataset(DS).expire(keep_last=1),
            # vacuum(grace_period=0) deletes a concurrent writer's not-yet-committed files by definition.
            races=False,
            old_snapshots=True,
        ),
        Operation("mv_refresh", lambda h: h.mv.refresh(), None, target=VIEW, opens=("mv",)),
        Operation(
            "materialize",
            lambda h: h.catalog.materialize(NEW_VIEW, h.ds.map_batches(view_fn, output_schema=VIEW_SCHEMA)),
            None,
            target=NEW_VIEW,
        ),
        Operation("index_refresh", lambda h: h.index.refresh(), None, target=INDEX, opens=("index",)),
    ]
}


# ----- trials -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPoint:
    """Where a trial injects: the fault, and the nth call of one operation (as seen on the dry run).

    `outage` > 0 (with LOST_RESPONSE) also fails that many calls after it: the resolution of the
    ambiguous outcome fails too.
    """

    fault: Fault
    op: Op
    nth: int
    path: str  # the dry run's path at that call (for messages; threads may reorder same-op calls)
    outage: int = 0

    @property
    def kind(self) -> str:
        """The fault's name in the report (an outage is a fault kind of its own)."""
        return f"{self.fault}+outage" if self.outage else str(self.fault)

    def __str__(self) -> str:
        outage = f" then {self.outage} failed call(s)" if self.outage else ""
        return f"{self.fault} at {self.op}#{self.nth} ({self.path}){outage}"


@dataclass
class TrialResult:
    """The outcome of one trial, in the terms of the report table."""

    backend: str
    operation: str
    point: str
    fault: str
    outcome: str  # ok | raised | raised_landed (raised, but its commit is in the log) | crash
    rows_lost: int = 0
    rows_duplicated: int = 0
    rows_wrong: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.outcome in ("ok", "raised", "raised_landed") and not self.problems


def dry_run(world: World, operation: Operation) -> list[Call]:
    """The store calls `operation` makes on a clone of the world, with nothing injected."""
    root = world.backend.clone(world.root, operation.clone_names)
    if operation.prepare is not None:
        operation.prepare(world.backend.catalog(root))
    plan = FaultPlan(error=world.backend.error)
    handles = Handles(world.backend.catalog(root, plan)).open(operation)
    return record_calls(lambda: operation.run(handles), plan)


OUTAGES = (1, 2, 3)  # calls failing after a lost conditional put: the re-check, then whatever follows


def fault_points(calls: list[Call], operation: Operation) -> list[FaultPoint]:
    """Every (fault, call) pair that makes sense: each fault at each call it applies to, plus a lost
    response followed by an outage at every conditional put (commits, locks, definitions)."""
    seen: dict[Op, int] = {}
    points: list[FaultPoint] = []
    for call in calls:
        nth = seen.get(call.op, 0)
        seen[call.op] = nth + 1
        for fault in Fault:
            if call.op not in APPLIES_TO[fault] or (fault is Fault.LATENCY and not operation.races):
                continue
            points.append(FaultPoint(fault, call.op, nth, call.path))
        if call.op is Op.PUT_IF_ABSENT:
            points += [FaultPoint(Fault.LOST_RESPONSE, call.op, nth, call.path, n) for n in OUTAGES]
    return points


def commit_points(points: list[FaultPoint]) -> list[FaultPoint]:
    """The fast subset: every fault at the operation's commit (its last conditional put, or its last
    write or delete when it has none, as expire and vacuum), with at most a one-call outage."""
    puts = [p for p in points if p.op is Op.PUT_IF_ABSENT] or [p for p in points if p.op in MUTATING]
    last = puts[-1] if puts else None
    return [p for p in puts if last is not None and (p.op, p.nth) == (last.op, last.nth) and p.outage <= 1]


S3_FAULTS = (Fault.ERROR, Fault.LOST_RESPONSE, Fault.PRECONDITION_AFTER_RETRY, Fault.STALE_LIST)


def backend_points(points: list[FaultPoint]) -> list[FaultPoint]:
    """The subset run on S3, where a trial costs seconds: the faults whose effect depends on the store's
    own semantics, at every conditional put (commits, locks, definitions; with a one-call outage), at every
    listing, and at the first plain write of each kind. Everything else acts above the store exactly as on
    local disk, where the full matrix runs."""
    first_writes = {(op, 0) for op in (Op.WRITE_BYTES, Op.PUT_FILE, Op.DELETE)}
    return [
        p
        for p in points
        if p.fault in S3_FAULTS
        and p.outage <= 1
        and (p.op in (Op.PUT_IF_ABSENT, Op.LIST_FILES) or (p.op, p.nth) in first_writes)
    ]


def ambiguous_commit_points(points: list[FaultPoint]) -> list[FaultPoint]:
    """The S3 part of the fast subset: the commit's ambiguous outcomes (412 on a retry, lost + outage)."""
    return [p for p in commit_points(points) if p.fault is Fault.PRECONDITION_AFTER_RETRY or p.outage]


class _Racer:
    """Another writer: commits fresh rows to `ds` main while the faulted call is slow."""

    def __init__(self, world: World, root: str) -> None:
        self._world, self._root = world, root
        self.committed: list[list[Row]] = []

    def __call__(self) -> None:
        n = len(self.committed)
        new = rows(range(900 + 10 * n, 903 + 10 * n), tag=7)
        self._world.backend.catalog(self._root).dataset(DS).append(table(new), idempotency_key=f"{RACE_KEY}:{n}")
        self.committed.append(new)


ALLOWED = (StorageError, OSError)


def run_trial(world: World, operation: Operation, point: FaultPoint) -> TrialResult:
    """Clone the world, run `operation` with one fault at `point`, retry if it raised, and check everything."""
    backend = world.backend
    root = backend.clone(world.root, operation.clone_names)
    if operation.prepare is not None:
        operation.prepare(backend.catalog(root))
    racer = _Racer(world, root)
    action = racer if point.fault is Fault.LATENCY else None
    rule = Rule(point.fault, op=point.op, nth=point.nth, delay=0.01, action=action, outage=point.outage)
    plan = FaultPlan([rule], error=backend.error)
    handles = Handles(backend.catalog(root, plan)).open(operation)
    result = TrialResult(world.label, operation.name, str(point), point.kind, "ok")
    with plan.active():
        try:
            operation.run(handles)
        except ALLOWED:
            result.outcome = "raised"
        except Exception:
            result.outcome = "crash"
            result.problems.append(f"unexpected error type:\n{traceback.format_exc(limit=6)}")
    if not plan.fired:
        result.problems.append(f"the fault never fired (calls: {len(plan.calls)}); the dry run does not match")
    if result.outcome != "ok":
        if result.outcome == "raised" and _op_entries(backend.catalog(root).dataset(DS), world, operation):
            result.outcome = "raised_landed"
        try:
            operation.run(handles)  # a retry, in the same process, with its caches: what a task retry does
        except Exception:
            result.problems.append(f"the retry without faults failed:\n{traceback.format_exc(limit=6)}")
    try:
        check(world, operation, root, racer, result)
    except Exception:
        result.problems.append(f"checking raised:\n{traceback.format_exc(limit=8)}")
    return result


def _op_entries(ds: Dataset, world: World, operation: Operation) -> list[int]:
    """Snapshot ids of `ds` main that this operation committed after the world was built."""
    if operation.operation is None:
        return []
    ids = [i for i in ds.versions().column("snapshot_id").to_pylist() if i > max(world.versions)]
    out = []
    for sid in ids:
        snap = ds.snapshot(sid)
        if snap.branch == "main" and not (snap.idempotency_key or "").startswith(RACE_KEY):
            out.append(sid)
    return out


def _diff(expected: Content, actual: Content, result: TrialResult, where: str) -> None:
    lost = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    wrong = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
    result.rows_lost += len(lost)
    result.rows_wrong += len(extra) + len(wrong)
    if lost or extra or wrong:
        result.problems.append(
            f"{where}: lost keys {sorted(lost)[:10]}, unexpected keys {sorted(extra)[:10]}, "
            f"changed rows {sorted(wrong)[:10]}"
        )


def _checked_content(ds: Dataset, version: int | None, result: TrialResult, where: str) -> Content:
    keyed, duplicated = content(ds, version)
    if duplicated:
        result.rows_duplicated += duplicated
        result.problems.append(f"{where}: {duplicated} duplicated row(s)")
    return keyed


def check(world: World, operation: Operation, root: str, racer: _Racer, result: TrialResult) -> None:
    """Compare what is stored with the model, through a fresh catalog (no cache shared with the writer)."""
    cat = world.backend.catalog(root)
    ds = cat.dataset(DS)
    for name in {DS, *((operation.target,) if operation.target in cat.datasets() else ())}:
        try:
            cat.dataset(name).validate()
        except StorageError as exc:
            result.problems.append(f"validate({name}) failed: {exc}")
    _check_ds(world, operation, ds, racer, result)
    if operation.target in (VIEW, NEW_VIEW):
        _check_view(cat, operation.target, result)
    elif operation.target == INDEX:
        _check_index(world, cat, root, result)


def _check_ds(world: World, operation: Operation, ds: Dataset, racer: _Racer, result: TrialResult) -> None:
    """Every live snapshot of `ds` holds the model's content; new ones follow the commits in log order."""
    live = set(ds.versions().column("snapshot_id").to_pylist())
    ours = set(_op_entries(ds, world, operation))
    expected_ops = 1 if operation.operation is not None else 0
    if operation.idempotency_key is not None and len(ours) != expected_ops:
        result.problems.append(
            f"{operation.name} landed {len(ours)} times (idempotency key {operation.idempotency_key})"
        )
    elif operation.operation is not None and not ours:
        result.problems.append(f"{operation.name} never landed, even after a retry")
    state = world.head
    races = iter(racer.committed)
    for sid in sorted(s for s in live if s > max(world.versions)):
        snap = ds.snapshot(sid)
        if snap.branch != "main":
            result.problems.append(f"snapshot {sid} landed on branch {snap.branch!r}")
            continue
        if (snap.idempotency_key or "").startswith(RACE_KEY):
            state = {**state, **{r["id"]: r for r in next(races)}}
        elif sid in ours:
            state = operation.apply(world, state)
        else:
            result.problems.append(f"snapshot {sid} ({snap.operation}) was committed by nobody")
            continue
        _diff(state, _checked_content(ds, sid, result, f"snapshot {sid}"), result, f"snapshot {sid}")
        if world.row_images and stored_diff(ds, world.main_head, sid) != model_diff(world.head, state):
            result.problems.append(f"diff({world.main_head}, {sid}) differs from the model's (row images)")
    if next(races, None) is not None:
        result.problems.append("a concurrent writer's acknowledged commit is not in the log")
    # Older snapshots are immutable: every one still live must read as it did (expire/vacuum must not
    # remove a file a live snapshot needs).
    for sid in sorted(live & world.versions.keys()) if operation.old_snapshots else []:
        _diff(world.versions[sid], _checked_content(ds, sid, result, f"snapshot {sid}"), result, f"snapshot {sid}")
    _diff(state, _checked_content(ds, None, result, "main head"), result, "main head")


def _check_view(cat: Catalog, name: str, result: TrialResult) -> None:
    """The view holds view_fn of its source at the version it says it reflects."""
    mv = cat.materialized_view(name)
    reflected = mv.reflects()
    if not reflected:
        result.problems.append(f"view {name!r} reflects no source version")
        return
    source = _checked_content(cat.dataset(DS), reflected[DS], result, f"source of {name}")
    actual = _checked_content(mv.dataset, None, result, f"view {name!r}")
    _diff(view_model(source), actual, result, f"view {name!r}")


def _check_index(world: World, cat: Catalog, root: str, result: TrialResult) -> None:
    """The index reflects a source snapshot, its files exist, and an exact search finds every row there."""
    idx = cat.vector_index(INDEX)
    store = open_store(f"{root}/{INDEX}", **world.backend.options)
    for info in store.list_files("_log"):  # versions() omits file names: read the stored entries
        logged = json.loads(store.read_bytes(info.path))
        missing = [p for p in (logged["index"], logged["keys"]) if not store.exists(p)]
        if missing:
            result.problems.append(f"index log entry {info.path} names missing files {missing}")
    reflected = idx.reflects()
    if reflected is None:
        result.problems.append("the index reflects nothing")
        return
    source = _checked_content(cat.dataset(DS), reflected, result, "index source")
    size = idx.versions().to_pylist()[-1]["size"]
    if size != len(source):
        result.problems.append(f"the index holds {size} keys; source snapshot {reflected} has {len(source)} rows")
    for key, r in source.items():
        hit = idx.search(r["vec"], k=1, exact=True).column("id").to_pylist()
        if hit != [key]:
            result.rows_lost += 1
            result.problems.append(f"exact search for row {key}'s vector found {hit}")


def iter_trials(
    world: World, operation: Operation, select: Callable[[list[FaultPoint]], list[FaultPoint]] = list
) -> Iterator[TrialResult]:
    """Run the fault points of `operation` that `select` keeps (default: all)."""
    for point in select(fault_points(dry_run(world, operation), operation)):
        yield run_trial(world, operation, point)

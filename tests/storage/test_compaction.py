"""compact() on local disk: same content before and after, old versions readable until expired, and
compactions racing upserts and deletes of other processes lose nothing and resurrect nothing."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import pytest
from _disk import files_under, unreferenced_files
from _model import SINGLE_KEY, MakeDataset, Model, Row, engine_diff
from _procs import CONFLICT, CommitReport, mutate_or_compact
from test_concurrency import WORKERS, run_workers

from storage import Catalog, Dataset, Snapshot, VersionNotFoundError, faults

LAYOUT = SINGLE_KEY
ROWS_PER_FILE = 40  # compact()'s target: files of a few rows are "small" and get merged


def rows_of(ds: Dataset, version: Any = None) -> list[Row]:
    return LAYOUT.sorted_rows(ds.read_all(version=version).to_pylist())


def diff_entries(ds: Dataset, start: Any, end: Any) -> list[tuple[str, Row]]:
    """The engine's diff as (change type, row), in the model's order."""
    return engine_diff(ds, start, end, LAYOUT)


def _build(ds: Dataset) -> Model:
    """Small files from appends, then upserts and deletes that leave deletion vectors: something to compact."""
    model = Model(LAYOUT)
    for start in range(0, 60, 6):
        rows = [LAYOUT.row((i,), "a", i) for i in range(start, start + 6)]
        assert ds.append(LAYOUT.table(rows)).id == model.upsert(rows)
    upserts = [LAYOUT.row((i,), "b", -i) for i in (1, 8, 15, 59)]
    assert ds.upsert(LAYOUT.table(upserts)).id == model.upsert(upserts)
    assert ds.delete(keys=[0, 2, 9, 33]).id == model.delete_keys([(0,), (2,), (9,), (33,)])
    return model


def test_compact_keeps_the_content(make_dataset: MakeDataset, log_row_images: bool) -> None:
    ds = make_dataset(max_rows_per_file=ROWS_PER_FILE, log_row_images=log_row_images)
    model = _build(ds)
    before = ds.snapshot()
    files_before = len(ds.manifest())

    snap = ds.compact()

    assert snap.operation == "compact" and snap.id == model.upsert([])
    assert len(ds.manifest()) < files_before
    assert (snap.summary["rows_inserted"], snap.summary["rows_updated"], snap.summary["rows_deleted"]) == (0, 0, 0)
    assert rows_of(ds) == model.rows() and ds.count() == len(model.head)
    assert ds.take([59, 8, 0]).to_pylist() == [model.head[(59,)], model.head[(8,)]]
    assert ds.diff(before.id).num_rows == 0, "a compaction changes no row"
    assert diff_entries(ds, 0, snap.id) == model.diff(0, snap.id)
    assert ds.validate().problems == []
    assert ds.compact().id == snap.id, "nothing left to compact"


def test_old_versions_stay_readable_until_expired(
    make_dataset: MakeDataset, catalog_root: Path, log_row_images: bool
) -> None:
    ds = make_dataset(max_rows_per_file=ROWS_PER_FILE, log_row_images=log_row_images)
    model = _build(ds)
    ds.compact()
    model.upsert([])
    ds.upsert(LAYOUT.table([LAYOUT.row((3,), "c", 3)]))
    model.upsert([LAYOUT.row((3,), "c", 3)])
    ds.compact(max_deleted_fraction=0.0)  # rewrites the compacted file too: it now has a deleted row
    model.upsert([])

    for version in range(model.head_id + 1):
        assert rows_of(ds, version) == model.rows(version), version
    # vacuum() removes nothing an old version still needs.
    ds.vacuum(grace_period=timedelta(0))
    assert [rows_of(ds, v) for v in range(model.head_id + 1)] == [model.rows(v) for v in range(model.head_id + 1)]

    ds.expire(keep_last=1)
    stats = ds.vacuum(grace_period=timedelta(0))
    assert stats.files_removed > 0
    assert rows_of(ds) == model.rows()
    with pytest.raises(VersionNotFoundError):
        ds.read_all(version=1)
    assert unreferenced_files(catalog_root / "ds") == set()
    assert len(files_under(catalog_root / "ds", ("data",))) == len(ds.manifest())
    assert ds.validate().problems == []


@contextmanager
def rival_commits_first(*writes: Callable[[], object]) -> Iterator[list[bool]]:
    """Run each of `writes` (another handle's commits) just before one of this process's commit attempts
    publishes, so that many attempts lose."""
    raced: list[bool] = []  # one entry per write started
    busy = [False]  # the rival's own commits pass the same checkpoint

    def hook(step: str) -> None:
        if step == "commit.before_log" and len(raced) < len(writes) and not busy[0]:
            busy[0] = True
            raced.append(True)
            try:
                writes[len(raced) - 1]()
            finally:
                busy[0] = False

    faults.set_hook(hook)
    try:
        yield raced
    finally:
        faults.set_hook(None)


def test_compaction_that_lost_races_carries_the_winners_changes(
    catalog: Catalog, catalog_root: Path, make_dataset: MakeDataset, log_row_images: bool
) -> None:
    ds = make_dataset(max_rows_per_file=ROWS_PER_FILE, log_row_images=log_row_images)
    model = _build(ds)
    rival = catalog.dataset("ds")  # its own handle, as another process would have
    changed = [LAYOUT.row((5,), "rival", 5), LAYOUT.row((59,), "rival", 5)]

    def rival_write() -> None:
        rival.delete(keys=[3, 8])
        rival.upsert(LAYOUT.table(changed))

    before = model.head_id
    # The compaction loses two attempts, and carries the winners' deletions over each time.
    with rival_commits_first(rival_write, lambda: rival.delete(keys=[13])) as raced:
        snap = ds.compact()
    model.delete_keys([(3,), (8,)])
    model.upsert(changed)
    model.delete_keys([(13,)])
    assert len(raced) == 2 and snap.operation == "compact" and snap.id == model.upsert([])
    assert rows_of(ds) == model.rows()
    # The rows the rival deleted or replaced did not move: diffs and merges must not see them again.
    assert ds.diff(snap.id - 1, snap.id).num_rows == 0
    assert diff_entries(ds, before, snap.id) == model.diff(before, snap.id)
    assert ds.history(3).column("_change_type").to_pylist() == ["delete", "insert"]
    ds.validate()
    assert unreferenced_files(catalog_root / "ds") == set(), "a superseded change log or vector was left behind"


def test_write_that_lost_a_race_to_a_compaction_lands(
    catalog: Catalog, make_dataset: MakeDataset, log_row_images: bool
) -> None:
    ds = make_dataset(max_rows_per_file=ROWS_PER_FILE, log_row_images=log_row_images)
    model = _build(ds)
    rival = catalog.dataset("ds")
    upsert = [LAYOUT.row((5,), "mine", 5)]
    steps: list[tuple[Callable[[], Snapshot], Callable[[], int]]] = [
        (lambda: ds.upsert(LAYOUT.table(upsert)), lambda: model.upsert(upsert)),
        (lambda: ds.delete(keys=[6, 7]), lambda: model.delete_keys([(6,), (7,)])),
    ]
    for write, apply in steps:
        # The rival rewrites every file with a deleted row, those this write deletes from included.
        with rival_commits_first(lambda: rival.compact(max_deleted_fraction=0.0)) as raced:
            snap = write()  # its rows moved under it: it follows them instead of conflicting
        compaction = model.upsert([])
        assert raced and ds.snapshot(compaction).operation == "compact"
        assert (snap.parent_id, snap.id) == (compaction, apply())
    assert rows_of(ds) == model.rows()
    assert diff_entries(ds, 0, model.head_id) == model.diff(0, model.head_id)
    ds.validate()


def test_compaction_restarted_by_a_race_keeps_its_target(catalog: Catalog, make_dataset: MakeDataset) -> None:
    ds = make_dataset(max_rows_per_file=ROWS_PER_FILE)
    model = _build(ds)
    rival = catalog.dataset("ds")
    # The rival deletes every row of one small file, which drops out of the manifest: the compaction starts over.
    with rival_commits_first(lambda: rival.delete(keys=list(range(48, 54)))) as raced:
        snap = ds.compact(target_rows=100)
    model.delete_keys([(k,) for k in range(48, 54)])
    assert raced and snap.operation == "compact"
    assert rows_of(ds) == model.rows()
    assert snap.summary["files_added"] == 1, "all rows fit one file of the 100 rows asked for"


def initial_rows(worker: int) -> list[Row]:
    """What a writing process's keys hold before the race (one small file per process)."""
    return [LAYOUT.row((k,), "load", 0) for k in range(1_000 * worker, 1_000 * worker + KEYS)]


def replay(reports: list[CommitReport]) -> Model:
    """The model of the log: the initial loads, then winning commits in snapshot id order."""
    model = Model(LAYOUT)
    for w in range(1, WORKERS):
        model.upsert(initial_rows(w))
    for r in sorted((r for r in reports if isinstance(r.outcome, int)), key=lambda r: r.outcome):
        if r.operation == "upsert":
            sid = model.upsert(r.rows)
        elif r.operation == "delete":
            sid = model.delete_keys(LAYOUT.key(row) for row in r.rows)
        else:
            sid = model.upsert([])  # a compaction: the same content
        assert sid == r.outcome, f"snapshot {r.outcome} is not the next one after {sid - 1}: {r}"
    return model


KEYS = 12  # keys per writing process
COMMITS = 12  # per process


@pytest.mark.slow
def test_compaction_racing_upserts_and_deletes(
    catalog: Catalog, catalog_root: Path, make_dataset: MakeDataset, spawn: SpawnContext
) -> None:
    # Default options only: the row-image variants of the races are the deterministic tests above.
    ds = make_dataset(max_rows_per_file=ROWS_PER_FILE)
    for w in range(1, WORKERS):
        ds.append(LAYOUT.table(initial_rows(w)))
    per_worker = run_workers(spawn, mutate_or_compact, lambda w: (catalog.uri, "ds", LAYOUT, w, COMMITS, KEYS))
    reports: list[CommitReport] = list(itertools.chain.from_iterable(per_worker))

    # Writers touch only their own keys, and a compaction changes no key: nothing may conflict or fail.
    failed = [r for r in reports if not isinstance(r.outcome, int) and r.outcome != "noop"]
    assert not failed, failed
    assert not [r for r in reports if r.outcome == CONFLICT]
    compactions = [r.outcome for r in reports if r.operation == "compact" and isinstance(r.outcome, int)]
    assert compactions, "no compaction landed"

    model = replay(reports)
    assert ds.versions().column("snapshot_id").to_pylist() == list(range(model.head_id + 1))
    for version in range(model.head_id + 1):
        assert rows_of(ds, version) == model.rows(version), f"version {version}"
    final = {LAYOUT.key(r): r for r in rows_of(ds)}
    last_op: dict[Any, CommitReport] = {}
    for r in sorted((r for r in reports if r.operation != "compact"), key=lambda r: r.outcome):
        last_op.update({LAYOUT.key(row): r for row in r.rows})
    lost = [k for k, r in last_op.items() if r.operation == "upsert" and k not in final]
    resurrected = [k for k, r in last_op.items() if r.operation == "delete" and k in final]
    assert (lost, resurrected) == ([], [])

    # Change data agrees too: a compaction's own diff is empty, and diffs across compactions are net changes.
    for sid in compactions:
        assert ds.diff(sid - 1, sid).num_rows == 0, f"compaction {sid} changed rows"
        assert diff_entries(ds, sid - 1, model.head_id) == model.diff(sid - 1, model.head_id), sid
    assert diff_entries(ds, WORKERS - 1, model.head_id) == model.diff(WORKERS - 1, model.head_id)
    assert ds.validate().problems == []
    assert unreferenced_files(catalog_root / "ds") == set(), "attempts that lost a race left files behind"

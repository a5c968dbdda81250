"""Real multi-process writers on one dataset: no lost or duplicated rows, one dense chain of snapshots."""

from __future__ import annotations

import itertools
import queue
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

from _disk import unreferenced_files
from _model import SINGLE_KEY, Layout, Model
from _procs import CONFLICT, CommitReport, concurrent_writer, directory_churner, idempotent_writer, racing_creator

from storage import Catalog, faults

WORKERS = 4
COMMITS = 25
SHARED_KEYS = list(range(5))  # every worker upserts these, so upserts of the same keys race
TIMEOUT = 120  # seconds; a hung child fails the test instead of hanging the suite


def run_workers(
    spawn: SpawnContext, target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]]
) -> list[Any]:
    """Start WORKERS processes in step (one barrier), collect one result each, and check they all exited."""
    barrier = spawn.Barrier(WORKERS)
    out = spawn.Queue()
    procs = [spawn.Process(target=target, args=(*args_for(w), barrier, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results: list[Any] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        # Drain the queue before join(): a child blocks on exit until its queued data is consumed.
        while len(results) < WORKERS:
            try:
                results.append(out.get(timeout=1))
            except queue.Empty:
                died = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not died, f"a worker died with exit code {died} before reporting"
                assert time.monotonic() < deadline, f"workers did not report within {TIMEOUT} s"
    finally:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()) if len(results) == WORKERS else 0)
            if p.is_alive():  # only after a failure: leave no stray writer behind
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return results


def replay(layout: Layout, reports: list[CommitReport]) -> Model:
    """The model of the log: successful commits applied in snapshot id order (the order they won in)."""
    model = Model(layout)
    for report in sorted((r for r in reports if isinstance(r.outcome, int)), key=lambda r: r.outcome):
        assert model.upsert(report.rows) == report.outcome
    return model


def test_concurrent_appends_and_upserts(catalog: Catalog, spawn: SpawnContext) -> None:
    layout = SINGLE_KEY
    ds = catalog.create_dataset("shared", layout.schema, primary_keys=list(layout.primary_keys))
    per_worker = run_workers(
        spawn,
        concurrent_writer,
        lambda w: (catalog.uri, "shared", layout, w, COMMITS, SHARED_KEYS),
    )
    reports: list[CommitReport] = list(itertools.chain.from_iterable(per_worker))
    assert len(reports) == WORKERS * COMMITS

    # Every commit returned a snapshot or gave up with CommitConflictError; nothing else.
    unexpected = [r for r in reports if not isinstance(r.outcome, int) and r.outcome != CONFLICT]
    assert not unexpected, unexpected
    won = sorted(r.outcome for r in reports if isinstance(r.outcome, int))
    # Each snapshot was reported by exactly one writer, and every snapshot after 0 has a writer.
    assert won == list(range(1, len(won) + 1))

    # The log is a single chain on main: ids 0..N dense, each the parent of the next.
    history = ds.versions()
    ids = history.column("snapshot_id").to_pylist()
    assert ids == list(range(len(won) + 1))
    assert history.column("parent_id").to_pylist() == [None, *ids[:-1]]
    assert set(history.column("branch").to_pylist()) == {"main"}
    ds.validate()

    final = ds.read_all()
    keys = final.column("id").to_pylist()
    assert len(keys) == len(set(keys)), [k for k, n in Counter(keys).items() if n > 1]
    by_key = {r["id"]: r for r in final.to_pylist()}

    appends = [r for r in reports if r.operation == "append"]
    for r in appends:
        landed = [by_key.get(row["id"]) == row for row in r.rows]
        # No lost append, and no partly applied one: a commit's rows are all there or (conflict) none.
        assert all(landed) if isinstance(r.outcome, int) else not any(landed), r

    # Upserts replace whole rows, so each shared key holds one of the values written for it: the one
    # of the newest successful upsert that touched it.
    newest: dict[int, dict[str, Any]] = {}
    for r in sorted(
        (r for r in reports if r.operation == "upsert" and isinstance(r.outcome, int)), key=lambda r: r.outcome
    ):
        newest.update({row["id"]: row for row in r.rows})
    assert {k: by_key.get(k) for k in SHARED_KEYS if k in by_key or k in newest} == newest

    # Every version equals the replay of the winning commits in snapshot order, and the count each
    # writer read back from its own snapshot (while others were still committing) agrees.
    model = replay(layout, reports)
    for version in ids:
        assert layout.sorted_rows(ds.read_all(version=version).to_pylist()) == model.rows(version)
    for r in reports:
        if isinstance(r.outcome, int):
            assert r.count_at_snapshot == len(model.versions[r.outcome])


def test_concurrent_idempotent_commits_land_once(catalog: Catalog, catalog_root: Path, spawn: SpawnContext) -> None:
    layout = SINGLE_KEY
    ds = catalog.create_dataset("once", layout.schema, primary_keys=list(layout.primary_keys))
    # Every worker commits the same batches under the same keys, all at once: a retried task racing itself.
    batches = [[layout.row((10 * b + i,), f"b{b}", i) for i in range(3)] for b in range(5)]
    results = dict(run_workers(spawn, idempotent_writer, lambda w: (catalog.uri, "once", layout, w, batches)))

    per_batch = list(zip(*(results[w] for w in range(WORKERS)), strict=True))
    # Each batch landed exactly once, and every worker got that one snapshot back.
    assert [set(ids) for ids in per_batch] == [{i + 1} for i in range(len(batches))], per_batch
    assert ds.versions().column("snapshot_id").to_pylist() == list(range(len(batches) + 1))
    expected = Model(layout)
    for rows in batches:
        expected.upsert(rows)
    assert layout.sorted_rows(ds.read_all().to_pylist()) == expected.rows()

    # The losers cleaned up after themselves, and a later retry is a no-op returning the first snapshot.
    assert unreferenced_files(catalog_root / "once") == set()
    again = ds.append(layout.table(batches[0]), idempotency_key="batch-0")
    assert (again.id, again.idempotency_key) == (1, "batch-0")
    assert ds.versions().num_rows == len(batches) + 1


def test_lost_commit_attempt_leaves_no_files(catalog: Catalog, catalog_root: Path) -> None:
    layout = SINGLE_KEY
    ds = catalog.create_dataset("race", layout.schema, primary_keys=list(layout.primary_keys))
    ds.append(layout.table([layout.row((i,), "a", i) for i in range(4)]))
    rival = Catalog(catalog_root).dataset("race")  # its own handle, as another process would have
    raced = False

    def commit_first(step: str) -> None:
        # Just before our upsert creates its log entry, another writer commits a disjoint key: our attempt
        # loses, and the upsert rebases and lands on the next attempt.
        nonlocal raced
        if step == "commit.before_log" and not raced:
            raced = True
            rival.append(layout.table([layout.row((100,), "rival", 0)]))

    faults.set_hook(commit_first)
    try:
        snap = ds.upsert(layout.table([layout.row((1,), "b", 10)]))
    finally:
        faults.set_hook(None)
    assert raced and snap.id == 3
    assert unreferenced_files(catalog_root / "race") == set()


def test_racing_creates_with_exist_ok_all_get_the_one_dataset(catalog: Catalog, spawn: SpawnContext) -> None:
    # A creator that finds another's _meta.json but no snapshot 0 finishes that create itself; when both finish
    # it at once the loser must see the same create, not "a log left from a dropped dataset".
    layout = SINGLE_KEY
    names = [f"d{i}" for i in range(15)]
    results = run_workers(spawn, racing_creator, lambda w: (catalog.uri, names, layout, w))
    assert [errors for _, errors in sorted(results)] == [[]] * WORKERS
    for name in names:
        ds = catalog.dataset(name)
        assert ds.count() == WORKERS
        assert ds.versions().column("operation").to_pylist().count("create") == 1


def test_objects_created_in_a_directory_that_deletes_keep_removing_all_land(
    tmp_path: Path, spawn: SpawnContext
) -> None:
    # delete() removes the directories it empties. A writer that made the directory an instant earlier must
    # make it again, not fail with FileNotFoundError (an 8-process load test lost a commit to this race).
    results = run_workers(spawn, directory_churner, lambda w: (str(tmp_path), w, 3.0))
    assert [errors for _, _, errors in sorted(results)] == [[]] * WORKERS
    assert all(n > 100 for _, n, _ in results), results  # the processes really churned the directory
    assert not (tmp_path / "dv").exists()  # the last delete emptied it, so it went too

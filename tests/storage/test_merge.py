"""Branch merges on local disk: fast-forward, three-way per primary key, conflicts and strategies, a merge
racing another process's commit, and time travel by datetime along branches."""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
from _disk import files_under, nothing_written, unreferenced_files
from _model import SINGLE_KEY, Key, MakeDataset, Model, Row, engine_diff
from _procs import BARRIER_TIMEOUT, upsert_on_signal

from storage import Catalog, Dataset, MergeConflictError, faults

LAYOUT = SINGLE_KEY
State = dict[Key, Row]


def rows_for(ids: range | list[int], label: str = "base") -> list[Row]:
    return [LAYOUT.row((i,), label, i) for i in ids]


def state(ds: Dataset, version: Any = None) -> State:
    """A version's rows by key; fails on a duplicate key."""
    rows = ds.read_all(version=version).to_pylist()
    out = {LAYOUT.key(r): r for r in rows}
    assert len(out) == len(rows), "a key appears twice"
    return out


def applied(start: State, upserts: Sequence[Row] = (), deletes: Sequence[int] = ()) -> State:
    """`start` with rows upserted and keys deleted (the model of one side's changes)."""
    out = {**start, **{LAYOUT.key(r): r for r in upserts}}
    for k in deletes:
        out.pop((k,), None)
    return out


def net_diff(ds: Dataset, start: Any, end: Any) -> list[tuple[str, Row]]:
    """The engine's diff as (change type, row), in the model's order."""
    return engine_diff(ds, start, end, LAYOUT)


def model_diff(before: State, after: State) -> list[tuple[str, Row]]:
    return Model(LAYOUT, [before, after]).diff(0, 1)


def test_fast_forward_merge_adopts_the_branch_without_writing_data(
    make_dataset: MakeDataset, catalog_root: Path, log_row_images: bool
) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ds.append(LAYOUT.table(rows_for(range(6))))
    dev = ds.create_branch("dev")
    dev.upsert(LAYOUT.table(rows_for([1], "dev")))
    dev.delete(keys=[2])
    dev.append(LAYOUT.table(rows_for([10, 11], "dev")))
    before, theirs = ds.snapshot(), state(dev)
    data_files = files_under(catalog_root / "ds", ("data",))

    snap = ds.merge("dev", message="take dev")

    assert files_under(catalog_root / "ds", ("data",)) == data_files, "a fast-forward copies no rows"
    assert snap.summary["fast_forward"] is True
    assert (snap.summary["files_added"], snap.summary["bytes_written"]) == (0, 0)
    assert (snap.summary["rows_inserted"], snap.summary["rows_updated"], snap.summary["rows_deleted"]) == (2, 1, 1)
    assert (snap.operation, snap.parent_id, snap.message) == ("merge", before.id, "take dev")
    assert (snap.summary["merge_parent"], snap.summary["merged_from"]) == (dev.snapshot().id, "dev")
    assert state(ds) == theirs
    assert sorted(ds.manifest().column("path").to_pylist()) == sorted(dev.manifest().column("path").to_pylist())
    assert net_diff(ds, before.id, snap.id) == model_diff(state(ds, before.id), theirs)
    assert ds.merge("dev").id == snap.id, "nothing left to merge: the head is returned unchanged"
    ds.validate()


def test_three_way_merge_applies_both_sides_in_one_snapshot(make_dataset: MakeDataset, log_row_images: bool) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ds.append(LAYOUT.table(rows_for(range(10))))
    dev = ds.create_branch("dev")
    dev.upsert(LAYOUT.table(rows_for([1], "dev")))
    dev.delete(keys=[2])
    dev.append(LAYOUT.table(rows_for([20], "dev")))
    ds.upsert(LAYOUT.table(rows_for([3], "main")))
    ds.delete(keys=[4])
    ds.append(LAYOUT.table(rows_for([30], "main")))
    before, dev_head = ds.snapshot(), dev.snapshot()
    expected = applied(state(ds), rows_for([1, 20], "dev"), [2])
    snapshots = ds.versions().num_rows

    snap = ds.merge("dev", message="merge dev")

    assert ds.versions().num_rows == snapshots + 1, "a merge is one snapshot"
    assert (snap.operation, snap.parent_id, snap.message) == ("merge", before.id, "merge dev")
    assert (snap.summary["merge_parent"], snap.summary["merged_from"]) == (dev_head.id, "dev")
    assert "fast_forward" not in snap.summary and snap.summary["conflicts_resolved"] == 0
    assert (snap.summary["rows_inserted"], snap.summary["rows_updated"], snap.summary["rows_deleted"]) == (1, 1, 1)
    assert state(ds) == expected
    assert state(dev) == state(ds, dev_head.id), "the source branch is not changed by a merge"
    assert net_diff(ds, before.id, snap.id) == model_diff(state(ds, before.id), expected)
    assert net_diff(ds, dev_head.id, snap.id) == model_diff(state(dev), expected)

    # The merge made dev's head an ancestor of main: merging again brings only dev's newer change.
    dev.upsert(LAYOUT.table(rows_for([5], "dev2")))
    again = ds.merge("dev")
    assert again.summary["merge_parent"] == dev.snapshot().id and again.summary["rows_updated"] == 1
    assert state(ds) == applied(expected, rows_for([5], "dev2"))
    ds.validate()


def test_the_same_change_on_both_sides_is_applied_once(make_dataset: MakeDataset, log_row_images: bool) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ds.append(LAYOUT.table(rows_for(range(8))))
    dev = ds.create_branch("dev")
    for side in (dev, ds):
        side.upsert(LAYOUT.table(rows_for([1], "same") + rows_for([40], "new")))
        side.delete(keys=[2])
    dev.upsert(LAYOUT.table(rows_for([5], "dev")))
    expected = applied(state(ds), rows_for([5], "dev"))

    snap = ds.merge("dev")

    assert snap.summary["conflicts_resolved"] == 0
    assert (snap.summary["rows_inserted"], snap.summary["rows_updated"], snap.summary["rows_deleted"]) == (0, 1, 0)
    assert state(ds) == expected and ds.count() == len(expected)


def test_rows_rewritten_unchanged_are_not_changes(make_dataset: MakeDataset, log_row_images: bool) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ds.append(LAYOUT.table(rows_for(range(8))))
    dev = ds.create_branch("dev")
    # Each side re-upserts rows as they were (a re-sync of a source) where the other side edits them.
    dev.upsert(LAYOUT.table(rows_for([5]) + rows_for([6], "dev")))
    ds.upsert(LAYOUT.table(rows_for([5], "main") + rows_for([6])))
    expected = applied(state(ds), rows_for([6], "dev"))

    for strategy in (None, "theirs"):  # "theirs" must not bring back the stale row 5 either
        merged = ds.create_branch(f"merged-{strategy}", from_version=ds.snapshot().id)
        merged.merge("dev", strategy=strategy)
        assert state(merged) == expected, strategy
        assert merged.snapshot().summary["conflicts_resolved"] == 0


def _diverge(ds: Dataset) -> tuple[Dataset, State, State]:
    """Main and branch "dev" change keys 1, 2, 3 and 40 differently, and 7 (dev) and 8 (main) on one side only.

    Returns dev and both sides' states.
    """
    ds.append(LAYOUT.table(rows_for(range(10))))
    dev = ds.create_branch("dev")
    dev.upsert(LAYOUT.table(rows_for([1, 2, 7], "dev") + rows_for([40], "dev")))
    dev.delete(keys=[3])
    ds.upsert(LAYOUT.table(rows_for([1, 3, 8], "main") + rows_for([40], "main")))
    ds.delete(keys=[2])
    return dev, state(ds), state(dev)


def test_conflicting_keys_raise_and_write_nothing(
    make_dataset: MakeDataset, catalog_root: Path, log_row_images: bool
) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    _diverge(ds)
    with nothing_written(ds, catalog_root / "ds"), pytest.raises(MergeConflictError) as raised:
        ds.merge("dev")
    assert sorted(raised.value.keys) == [1, 2, 3, 40]
    listed = re.search(r"sides: (.*)\. Resolve", str(raised.value))
    assert listed is not None and sorted(int(k) for k in listed.group(1).split(", ")) == [1, 2, 3, 40]
    assert "'dev' into 'main'" in str(raised.value) and "4 key(s)" in str(raised.value)


@pytest.mark.parametrize("strategy", ["ours", "theirs"])
def test_strategy_picks_a_side_for_conflicting_keys(
    make_dataset: MakeDataset, log_row_images: bool, strategy: str
) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    _dev, ours, theirs = _diverge(ds)
    before = ds.snapshot()
    snap = ds.merge("dev", strategy=strategy)  # type: ignore[arg-type]
    assert snap.summary["conflicts_resolved"] == 4
    conflicting = [(1,), (2,), (3,), (40,)]
    winner = ours if strategy == "ours" else theirs
    # Non-conflicting changes of both sides land either way; conflicting keys take the chosen side's state.
    expected = applied(ours, rows_for([7], "dev"))
    for k in conflicting:
        expected.pop(k, None)
        if k in winner:
            expected[k] = winner[k]
    assert state(ds) == expected
    assert net_diff(ds, before.id, snap.id) == model_diff(ours, expected)
    ds.validate()


@pytest.mark.parametrize("strategy", [None, "ours", "theirs"])
def test_deletes_against_updates(make_dataset: MakeDataset, log_row_images: bool, strategy: str | None) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ds.append(LAYOUT.table(rows_for(range(10))))
    dev = ds.create_branch("dev")
    # dev deletes 1 (main updates it), 3 (main deletes it too) and 5 (untouched on main); it updates 2
    # (main deletes it). Main deletes 6, untouched on dev.
    dev.delete(keys=[1, 3, 5])
    dev.upsert(LAYOUT.table(rows_for([2], "dev")))
    ds.upsert(LAYOUT.table(rows_for([1], "main")))
    ds.delete(keys=[2, 3, 6])
    ours, theirs = state(ds), state(dev)
    if strategy is None:
        with pytest.raises(MergeConflictError) as raised:
            ds.merge("dev")
        assert sorted(raised.value.keys) == [1, 2]
        return
    ds.merge("dev", strategy=strategy)  # type: ignore[arg-type]
    expected = applied(ours, deletes=[5])
    for k in [(1,), (2,)]:
        expected.pop(k, None)
        side = ours if strategy == "ours" else theirs
        if k in side:
            expected[k] = side[k]
    assert state(ds) == expected
    assert (3,) not in expected and (6,) not in expected


@contextmanager
def rival_process(
    spawn: SpawnContext, catalog: Catalog, name: str, batches: list[list[Row]]
) -> Iterator[tuple[Event, Queue[int | str]]]:
    """Another process that upserts `batches` on main of dataset `name`, one each time the test sets the event."""
    go, out = spawn.Event(), spawn.Queue()
    proc = spawn.Process(target=upsert_on_signal, args=(catalog.uri, name, LAYOUT, batches, go, out))
    proc.start()
    try:
        yield go, out
        proc.join(timeout=BARRIER_TIMEOUT)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


def _commit_when_merge_publishes(go: Event, out: Queue[int | str]) -> tuple[dict[str, Any], Any]:
    """A fault hook that lets the rival commit while the merge's first attempt is about to publish."""
    report: dict[str, Any] = {}

    def hook(step: str) -> None:
        if step == "commit.before_log" and "rival" not in report:
            go.set()
            try:
                report["rival"] = out.get(timeout=BARRIER_TIMEOUT)
            except queue.Empty:
                report["rival"] = "rival did not report"

    return report, hook


@pytest.mark.slow
def test_merge_racing_a_commit_from_another_process(
    make_dataset: MakeDataset, catalog: Catalog, catalog_root: Path, spawn: SpawnContext, log_row_images: bool
) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ds.append(LAYOUT.table(rows_for(range(20))))
    # One round per kind of merge. Each round the rival updates one key dev does not touch and inserts two new
    # ones, just as the merge is about to publish; in the "conflict" round it updates the key dev updates.
    kinds = ["fast_forward", "three_way", "conflict", "three_way"]
    rival_rows = [
        rows_for([1 if kind == "conflict" else 10 + r], f"rival{r}") + rows_for([500 + 2 * r, 501 + 2 * r], "rival")
        for r, kind in enumerate(kinds)
    ]
    with rival_process(spawn, catalog, ds.name, rival_rows) as (go, out):
        for r, kind in enumerate(kinds):
            dev = ds.create_branch(f"dev{r}")
            dev.upsert(LAYOUT.table(rows_for([1], f"dev{r}") + rows_for([100 + r], "dev")))
            dev.delete(keys=[2 + r])
            if kind != "fast_forward":
                ds.upsert(LAYOUT.table(rows_for([15 + r], "main")))
            before = state(ds)
            report, hook = _commit_when_merge_publishes(go, out)
            faults.set_hook(hook)
            try:
                if kind == "conflict":
                    with pytest.raises(MergeConflictError) as raised:
                        ds.merge(f"dev{r}")
                    assert raised.value.keys == [1] and isinstance(report["rival"], int), report
                    assert ds.snapshot().id == report["rival"], "only the rival's commit landed"
                    assert state(ds) == applied(before, rival_rows[r])
                    assert unreferenced_files(catalog_root / "ds") == set(), "the losing merge left files"
                    continue
                snap = ds.merge(f"dev{r}")
            finally:
                faults.set_hook(None)
            rival = report["rival"]
            assert isinstance(rival, int), rival
            # The merge lost its first attempt to the rival and landed right after it, with both changes.
            assert (snap.parent_id, snap.id) == (rival, rival + 1)
            assert "fast_forward" not in snap.summary, "main moved: the merge had to become a three-way merge"
            with_rival = applied(before, rival_rows[r])
            expected = applied(with_rival, rows_for([1], f"dev{r}") + rows_for([100 + r], "dev"), [2 + r])
            assert state(ds) == expected
            assert state(ds, rival) == with_rival
            assert net_diff(ds, rival, snap.id) == model_diff(with_rival, expected)
    assert unreferenced_files(catalog_root / "ds") == set()
    ds.validate()


def test_time_travel_by_datetime_follows_each_branch(make_dataset: MakeDataset) -> None:
    ds = make_dataset()

    def pause() -> None:
        time.sleep(0.01)  # distinct commit times

    first = ds.append(LAYOUT.table(rows_for(range(4))))
    pause()
    dev = ds.create_branch("dev")
    fork = dev.snapshot()
    pause()
    main_edit = ds.upsert(LAYOUT.table(rows_for([1], "main")))
    pause()
    dev_edit = dev.upsert(LAYOUT.table(rows_for([2], "dev")))
    pause()
    merge = ds.merge("dev")
    timeline = [first, fork, main_edit, dev_edit, merge]

    # At each moment a branch shows its own newest snapshot at or before it: dev never sees main's edit,
    # main sees dev's edit only from the merge on, and before the fork dev's past is main's.
    expect_main = [first.id, first.id, main_edit.id, main_edit.id, merge.id]
    expect_dev = [first.id, fork.id, fork.id, dev_edit.id, dev_edit.id]
    for snap, on_main, on_dev in zip(timeline, expect_main, expect_dev, strict=True):
        assert (ds.snapshot(snap.created_at).id, dev.snapshot(snap.created_at).id) == (on_main, on_dev), snap
        assert state(dev, snap.created_at) == state(dev, on_dev)
    assert state(dev, main_edit.created_at)[(1,)]["label"] == "base"
    assert state(ds, dev_edit.created_at)[(2,)]["label"] == "base"
    assert state(ds, merge.created_at)[(2,)]["label"] == "dev"

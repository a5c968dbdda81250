"""Every bug the reliability suite found, as its minimal reproduction (xfail(strict=True) until fixed)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from fault_matrix import SCHEMA, VIEW_SCHEMA, rows, table, view_fn
from faulty_store import Fault, FaultPlan, Op, Rule

from storage import Catalog, CorruptDatasetError, Dataset, StorageError


def setup(tmp_path: Path, views: bool = False) -> str:
    """A catalog with dataset `ds` (ids 0..5 in two files), and optionally view `mv` and index `idx`."""
    root = str(tmp_path / "lake")
    cat = Catalog(root)
    ds = cat.create_dataset("ds", SCHEMA, ["id"], ["blob"])
    ds.append(table(rows(range(3))))
    ds.append(table(rows(range(3, 6))))
    if views:
        cat.materialize("mv", ds.map_batches(view_fn, output_schema=VIEW_SCHEMA))
        cat.create_vector_index("idx", source=ds, column="vec", metric="l2sq")
        ds.append(table(rows([6])))  # so that refreshes have work to do
    return root


def faulty(root: str, *rules: Rule) -> tuple[Catalog, FaultPlan]:
    plan = FaultPlan(list(rules))
    return Catalog(root, wrap_store=plan.wrap), plan


def reread(root: str) -> Dataset:
    """`ds` through a catalog that shares no cache with the writer, after validate()."""
    ds = Catalog(root, wrap_store=FaultPlan().wrap).dataset("ds")
    ds.validate()
    return ds


def ids(ds: Dataset) -> list[int]:
    return sorted(ds.read_all(columns=["id"]).column("id").to_pylist())


# ----- fixed ---------------------------------------------------------------------------------------------


def test_a_commit_told_exists_by_its_own_retried_put_keeps_its_snapshot(tmp_path: Path) -> None:
    """BUG (fixed in storage/io put_once, used by Log.try_append): S3's SDK retries a conditional put
    whose response was lost; the retry gets 412, the engine took it for a lost race, deleted the manifest
    of the snapshot that had landed, and (idempotency key found) returned it: the head was unreadable."""
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.PRECONDITION_AFTER_RETRY, op=Op.PUT_IF_ABSENT, path="ds/_log/*"))
    ds = cat.dataset("ds")
    with plan.active():
        snap = ds.append(table(rows([10])), idempotency_key="k")
    assert plan.fired
    stored = reread(root)
    assert snap.id == stored.snapshot().id == 3
    assert ids(stored) == [0, 1, 2, 3, 4, 5, 10]


@pytest.mark.parametrize("outage", [1, 2, 3])
def test_a_lost_commit_response_whose_recheck_fails_keeps_the_commits_files(tmp_path: Path, outage: int) -> None:
    """BUG (fixed in storage/txn.py commit()): the log put landed, its response was lost, and reading the
    log back failed too; commit() then deleted the data file and change log of the snapshot that landed.
    Now the append either finds its snapshot or raises, and the snapshot stays whole either way."""
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.LOST_RESPONSE, op=Op.PUT_IF_ABSENT, path="ds/_log/*", outage=outage))
    ds = cat.dataset("ds")
    with plan.active(), contextlib.suppress(OSError):
        ds.append(table(rows([10])), idempotency_key="k")
    assert ids(reread(root)) == [0, 1, 2, 3, 4, 5, 10]
    assert ds.append(table(rows([10])), idempotency_key="k").id == 3  # the retry finds it, once
    assert ids(reread(root)) == [0, 1, 2, 3, 4, 5, 10]


def test_compact_and_delete_branch_work_on_a_freshly_opened_dataset(tmp_path: Path) -> None:
    """BUG (fixed in storage/dataset.py): compact(), delete_branch() and history() read the branch head
    without reading the log first, so on a new handle they raised VersionNotFoundError ("no branch")."""
    root = setup(tmp_path)
    Catalog(root).dataset("ds").create_branch("dev")
    assert Catalog(root).dataset("ds").compact(target_rows=100).operation == "compact"
    Catalog(root).dataset("ds").delete_branch("dev")
    assert len(Catalog(root).dataset("ds").history(1)) == 1
    assert ids(reread(root)) == [0, 1, 2, 3, 4, 5]


def test_create_branch_told_exists_by_its_own_retried_put_succeeds(tmp_path: Path) -> None:
    """BUG (fixed by put_once in Log.try_append): the branch was created, but the 412 of the SDK's retry
    made create_branch() loop and raise BranchExistsError for its own branch."""
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.PRECONDITION_AFTER_RETRY, op=Op.PUT_IF_ABSENT, path="ds/_log/*"))
    with plan.active():
        dev = cat.dataset("ds").create_branch("dev")
    assert ids(dev) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("fault", [Fault.LOST_RESPONSE, Fault.PRECONDITION_AFTER_RETRY])
def test_a_refresh_whose_lock_put_answer_was_lost_holds_the_lock(tmp_path: Path, fault: Fault) -> None:
    """BUG (fixed by put_once in RefreshLease): the lock was created but the answer lost, so the refresh
    failed with RefreshInProgressError, and so did every refresh on this host for the lease's hour."""
    root = setup(tmp_path, views=True)
    cat, plan = faulty(root, Rule(fault, op=Op.PUT_IF_ABSENT, path="mv/_refresh.lock"))
    mv = cat.materialized_view("mv")
    with plan.active():
        assert mv.refresh().changed
    assert plan.fired
    assert sorted(Catalog(root).materialized_view("mv").read_all().column("id").to_pylist()) == list(range(7))


def test_a_refresh_whose_lock_release_failed_can_be_retried(tmp_path: Path) -> None:
    """BUG (fixed in storage/views/lease.py): a failed delete of the lock left it naming this live process,
    so the retry raised RefreshInProgressError for the lease's hour (views and vector indexes)."""
    root = setup(tmp_path, views=True)
    cat, plan = faulty(root, Rule(Fault.ERROR, op=Op.DELETE, path="idx/_refresh.lock"))
    idx = cat.vector_index("idx")
    with plan.active(), pytest.raises(OSError):
        idx.refresh()
    assert not idx.refresh().changed  # the first refresh had committed; the retry takes the stale lock
    assert idx.reflects() == Catalog(root).dataset("ds").snapshot().id


def test_a_truncated_index_key_table_raises_a_storage_error(tmp_path: Path) -> None:
    """BUG (fixed in storage/vector_index.py): a damaged key table (or index file) surfaced as a raw
    pyarrow ArrowInvalid (usearch RuntimeError), outside the StorageError tree callers handle."""
    root = setup(tmp_path, views=True)
    cat, plan = faulty(root, Rule(Fault.TRUNCATED_READ, op=Op.READ_BYTES, path="idx/files/*.keys.parquet"))
    idx = cat.vector_index("idx")
    with plan.active(), pytest.raises(CorruptDatasetError):
        idx.refresh()
    assert idx.refresh().changed


# ----- open ----------------------------------------------------------------------------------------------


def test_create_dataset_can_be_retried_after_a_failure(tmp_path: Path) -> None:
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.ERROR, op=Op.WRITE_BYTES, path="new/manifests/*"))
    with plan.active(), pytest.raises((StorageError, OSError)):
        cat.create_dataset("new", SCHEMA, ["id"])
    cat.create_dataset("new", SCHEMA, ["id"]).append(table(rows([1])))
    assert Catalog(root).dataset("new").count() == 1


def test_materialize_can_be_retried_after_a_failure(tmp_path: Path) -> None:
    root = setup(tmp_path)
    cat, plan = faulty(root, Rule(Fault.ERROR, op=Op.PUT_IF_ABSENT, path="mv2/_view.json"))
    view = cat.dataset("ds").map_batches(view_fn, output_schema=VIEW_SCHEMA)
    with plan.active(), pytest.raises(OSError):
        cat.materialize("mv2", view)
    mv = cat.materialize("mv2", view)
    assert sorted(mv.read_all().column("id").to_pylist()) == list(range(6))

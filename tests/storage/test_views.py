"""Materialized views: incremental refresh against a plain-Python model, crash safety, leases, Ray.

The model test runs random sequences of commits on both sources (append, upsert, delete, restore,
compact) and refreshes (to the heads or to older versions); after every refresh the view must equal the
plan's plain-Python twin and `mv.recompute()`, and every version the view ever had must still equal the
twin at the source snapshots it records.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import pytest
import view_udfs as u
from _model import Model, Row
from _view_procs import refresh_view, refresh_view_and_die
from _views import CATS, ITEMS, PLANS, SHIFTED_JOIN, Plan, create_sources, sort_rows, table_rows
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from storage import (
    Catalog,
    Dataset,
    DatasetExistsError,
    MaterializedView,
    RefreshInProgressError,
    SchemaMismatchError,
    WriteOptions,
    faults,
)
from storage.views import evaluate, lease, materialized

LEASE_FILE = "_refresh.lock"

# Small key spaces so commits keep hitting the same rows, and items keep pointing at cats that change.
ITEM_IDS = st.integers(0, 11)
CAT_IDS = st.integers(0, 4)
ITEM_ROW = st.fixed_dictionaries(
    {
        "id": ITEM_IDS,
        "label": st.sampled_from(["a", "b", None]),
        "score": st.sampled_from([None, *range(-3, 4)]),
        "cat_id": st.sampled_from([None, *range(6)]),  # 5 never exists: a dangling reference
    }
)
CAT_ROW = st.fixed_dictionaries(
    {"cat_id": CAT_IDS, "name": st.sampled_from(["x", "y", None]), "weight": st.sampled_from([None, 0, 1, 2, 3])}
)
ROWS = {"items": st.lists(ITEM_ROW, unique_by=lambda r: r["id"], max_size=5)}
ROWS["cats"] = st.lists(CAT_ROW, unique_by=lambda r: r["cat_id"], max_size=3)
LAYOUTS = {"items": ITEMS, "cats": CATS}


class Sources:
    """The two source datasets and a model of every version of each."""

    def __init__(self, catalog: Catalog) -> None:
        items, cats = create_sources(catalog)
        self.datasets: dict[str, Dataset] = {"items": items, "cats": cats}
        self.models = {name: Model(LAYOUTS[name]) for name in self.datasets}

    def heads(self) -> dict[str, int]:
        return {name: m.head_id for name, m in self.models.items()}

    def expected(self, plan: Plan, pinned: dict[str, int] | None = None) -> list[Row]:
        """The plan's twin at source versions (the heads for sources `pinned` leaves out)."""
        at = {**self.heads(), **(pinned or {})}
        states = {name: model.versions[at[name]] for name, model in self.models.items()}
        return sort_rows(plan.expected(states["items"], states["cats"]))

    def write(self, name: str, op: str, rows: list[Row], version: int = 0) -> None:
        """Apply one commit to a source and to its model."""
        ds, model, layout = self.datasets[name], self.models[name], LAYOUTS[name]
        if op == "append":  # append only keys the head lacks: an existing key is a conflict, not an upsert
            rows = [r for r in rows if layout.key(r) not in model.head]
            if not rows:
                return
            snap = ds.append(layout.table(rows))
            expected_id = model.upsert(rows)
        elif op == "upsert":
            snap, expected_id = ds.upsert(layout.table(rows)), model.upsert(rows)
        elif op == "delete":
            keys = [layout.key_arg(layout.key(r)) for r in rows]
            snap, expected_id = ds.delete(keys=keys), model.delete_keys(layout.key(r) for r in rows)
        elif op == "restore":
            snap, expected_id = ds.restore(version), model.restore(version)
        else:  # compact: moves rows between files, changes no row: a view must not recompute anything
            snap = ds.compact(target_rows=64, max_deleted_fraction=0.0)
            expected_id = model.restore(model.head_id) if snap.id > model.head_id else snap.id
        assert snap.id == expected_id


def pinned_for(plan: Plan, heads: dict[str, int]) -> dict[str, int]:
    """The source snapshots a view of `plan` reflects, as mv.reflects() reports them."""
    return {name: heads[name] for name in plan.sources}


def check_view(mv: MaterializedView, sources: Sources, plan: Plan, pinned: dict[str, int] | None = None) -> None:
    """The view's head equals the twin at `pinned` (default: the heads) and a from-scratch recompute, and
    says it reflects them."""
    pinned = pinned or pinned_for(plan, sources.heads())
    assert mv.reflects() == pinned
    expected = sources.expected(plan, pinned)
    assert table_rows(mv.read_all()) == expected
    assert table_rows(mv.recompute()) == expected


class ViewMachine(RuleBasedStateMachine):
    """One materialized view of one plan; random commits on its sources, refreshes, reads of old versions."""

    def __init__(self, plan: Plan, base: Path) -> None:
        super().__init__()
        self.plan = plan
        self.tmp = Path(tempfile.mkdtemp(dir=base))  # one directory per example: examples share nothing
        self.catalog = Catalog(self.tmp / "lake")
        self.sources = Sources(self.catalog)
        self.refreshed: dict[int, dict[str, int]] = {}  # view snapshot id -> source snapshots it reflects
        self.mv: MaterializedView | None = None

    @initialize(items=ROWS["items"], cats=ROWS["cats"])
    def materialize(self, items: list[Row], cats: list[Row]) -> None:
        self.sources.write("items", "upsert", items)
        self.sources.write("cats", "upsert", cats)
        self.mv = self.catalog.materialize("mv", self.plan.build(*self.sources.datasets.values()))
        self.after_refresh(pinned_for(self.plan, self.sources.heads()))

    def after_refresh(self, pinned: dict[str, int]) -> None:
        assert self.mv is not None
        check_view(self.mv, self.sources, self.plan, pinned)
        head = self.mv.dataset.snapshot().id
        self.refreshed[head] = pinned
        # Idempotent: nothing changed since, so a second refresh to the same versions commits nothing.
        again = self.mv.refresh(version=self.version_arg(pinned))
        assert (again.changed, again.snapshot_id, self.mv.dataset.snapshot().id) == (False, head, head)

    def version_arg(self, pinned: dict[str, int]) -> Any:
        return pinned["items"] if len(self.plan.sources) == 1 else pinned

    @rule(
        source=st.sampled_from(["items", "cats"]),
        op=st.sampled_from(["append", "upsert", "upsert", "delete", "restore", "compact"]),
        data=st.data(),
    )
    def commit(self, source: str, op: str, data: st.DataObject) -> None:
        rows = data.draw(ROWS[source], label="rows")
        version = data.draw(st.integers(0, self.sources.models[source].head_id), label="version")
        self.sources.write(source, op, rows, version)

    @rule()
    def refresh(self) -> None:
        assert self.mv is not None
        stats = self.mv.refresh()
        pinned = pinned_for(self.plan, self.sources.heads())
        assert stats.sources == pinned
        # The change logs reach back to the last refresh, so only changed keys are redone (a map left of a
        # join too: the join columns it produced are traced).
        assert not stats.full
        self.after_refresh(pinned)

    @rule(data=st.data())
    def refresh_to_older_versions(self, data: st.DataObject) -> None:
        assert self.mv is not None
        heads = self.sources.heads()
        pinned = {name: data.draw(st.integers(0, heads[name]), label=name) for name in self.plan.sources}
        stats = self.mv.refresh(version=self.version_arg(pinned))
        assert stats.sources == pinned
        self.after_refresh(pinned)

    @rule(data=st.data())
    def read_old_view_version(self, data: st.DataObject) -> None:
        assert self.mv is not None
        version = data.draw(st.sampled_from(sorted(self.refreshed)), label="view version")
        pinned = self.refreshed[version]
        assert self.mv.reflects(version) == pinned
        expected = self.sources.expected(self.plan, pinned)
        assert table_rows(self.mv.read_all(version=version)) == expected
        assert table_rows(self.mv.recompute(version=self.version_arg(pinned))) == expected

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.parametrize("plan", [*PLANS.values(), SHIFTED_JOIN], ids=[*PLANS, SHIFTED_JOIN.name])
def test_view_matches_model(plan: Plan, tmp_path: Path) -> None:
    run_state_machine_as_test(
        lambda: ViewMachine(plan, tmp_path),
        settings=settings(
            max_examples=10,
            stateful_step_count=10,
            deadline=None,
            derandomize=True,  # the same sequences on every run and machine: CI failures reproduce
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # No shrinking: each step writes a catalog, so shrinking a failure takes many minutes; the
            # failing sequence is printed as generated (10 steps at most).
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )


# ----- targeted refresh behaviour -------------------------------------------------------------------------


def item_rows(ids: range, label: str | None = "a", cat_id: int | None = 1) -> list[Row]:
    return [{"id": i, "label": label, "score": i % 7, "cat_id": cat_id} for i in ids]


@pytest.fixture
def sources(catalog: Catalog) -> Sources:
    """items (ids 0..99, every one pointing at cat 1) and cats 0..4, committed once each."""
    src = Sources(catalog)
    src.write("items", "append", item_rows(range(100)))
    src.write("cats", "append", [{"cat_id": c, "name": f"c{c}", "weight": c} for c in range(5)])
    return src


def test_refresh_recomputes_only_changed_keys(catalog: Catalog, sources: Sources) -> None:
    plan = PLANS["map_filter"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    first = mv.dataset.snapshot()
    sources.write("items", "upsert", item_rows(range(10, 13), label="b"))
    sources.write("items", "delete", item_rows(range(50, 52)))
    stats = mv.refresh()
    assert (stats.full, stats.keys_recomputed, stats.changed) == (False, 5, True)
    assert stats.snapshot_id == first.id + 1 == mv.dataset.snapshot().id  # one refresh, one commit
    check_view(mv, sources, plan)
    assert mv.reflects(first.id) == {"items": 1}
    sources.write("items", "compact", [])  # rows move between files; no row changes
    moved = mv.refresh()
    assert (moved.changed, moved.full, moved.keys_recomputed) == (True, False, 0)
    check_view(mv, sources, plan)


def test_right_side_changes_reach_left_rows(catalog: Catalog, sources: Sources) -> None:
    plan = PLANS["left_join"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    sources.write("cats", "upsert", [{"cat_id": 1, "name": "renamed", "weight": 9}])
    stats = mv.refresh()
    assert (stats.full, stats.keys_recomputed) == (False, 100)  # every item points at cat 1
    check_view(mv, sources, plan)
    assert set(mv.read_all().column("desc").to_pylist()) == {"a@renamed"}
    sources.write("cats", "delete", [{"cat_id": 1}])
    mv.refresh()
    check_view(mv, sources, plan)
    assert set(mv.read_all().column("name").to_pylist()) == {None}  # a left join keeps rows without a cat


def test_function_version_change_recomputes_everything(catalog: Catalog, sources: Sources) -> None:
    items = sources.datasets["items"]
    mv = catalog.materialize("mv", items.map_batches(u.tag_items, u.TAGGED_SCHEMA, version="1"))
    # Views have no API to redefine an existing one (see the report): a handle with the new plan stands in.
    changed = items.map_batches(u.tag_items_v2, u.TAGGED_SCHEMA, version="2")
    mv2 = MaterializedView(catalog, mv.name, mv.dataset, changed.node)
    stats = mv2.refresh()
    assert (stats.full, stats.changed, stats.keys_recomputed) == (True, True, 100)
    expected = sort_rows([u.tag_items_v2_row(r) for r in sources.models["items"].head.values()])
    assert table_rows(mv2.read_all()) == expected
    assert mv2.refresh().changed is False
    # Flipping back to version "1" at the same source snapshot must recompute again, not reuse a commit.
    back = mv.refresh()
    assert (back.full, back.changed) == (True, True)
    assert table_rows(mv.read_all()) == sort_rows([u.tag_items_row(r) for r in sources.models["items"].head.values()])


def test_full_refresh_without_source_change_commits(catalog: Catalog, sources: Sources) -> None:
    mv = catalog.materialize("mv", PLANS["map_filter"].build(*sources.datasets.values()))
    head = mv.dataset.snapshot().id
    stats = mv.refresh(full=True)
    assert (stats.full, stats.changed, stats.snapshot_id) == (True, True, head + 1)
    assert mv.dataset.snapshot().id == head + 1


def test_refresh_after_source_snapshots_expired(catalog: Catalog, sources: Sources) -> None:
    plan = PLANS["map_filter"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    for start in (0, 20, 40):
        sources.write("items", "upsert", item_rows(range(start, start + 5), label="b"))
    sources.datasets["items"].expire(keep_last=1)  # the snapshot the view reflects is gone
    stats = mv.refresh()
    assert stats.changed
    check_view(mv, sources, plan)


def test_right_side_change_after_map_of_join_column(catalog: Catalog, sources: Sources) -> None:
    mv = catalog.materialize("mv", SHIFTED_JOIN.build(*sources.datasets.values()))
    sources.write("items", "upsert", item_rows(range(90, 100), cat_id=3))  # these now map to cat 4
    sources.write("cats", "upsert", [{"cat_id": 2, "name": "renamed", "weight": 9}])  # the others map 1 -> 2
    stats = mv.refresh()
    # The map's output join columns were traced: only items reaching cat 2 (and the changed ones) are redone.
    assert (stats.full, stats.keys_recomputed) == (False, 100)
    assert table_rows(mv.read_all()) == sources.expected(SHIFTED_JOIN)
    sources.write("cats", "upsert", [{"cat_id": 4, "name": "four", "weight": 1}])
    stats = mv.refresh()
    assert (stats.full, stats.keys_recomputed) == (False, 10)
    check_view(mv, sources, SHIFTED_JOIN)


def test_vacuum_keeps_the_live_join_traces_and_removes_expired_ones(
    catalog: Catalog, catalog_root: Path, sources: Sources
) -> None:
    mv = catalog.materialize("mv", SHIFTED_JOIN.build(*sources.datasets.values()))
    for cat_id in (2, 3, 4):
        sources.write("cats", "upsert", [{"cat_id": cat_id, "name": f"n{cat_id}", "weight": cat_id}])
        mv.refresh()
    traces = catalog_root / "mv" / "_view_traces"
    written = set(os.listdir(traces))
    mv.dataset.expire(keep_last=1)
    mv.dataset.vacuum(grace_period=timedelta(0))
    left = set(os.listdir(traces))
    assert left and left < written  # the head's traces stay, the expired versions' go
    sources.write("cats", "upsert", [{"cat_id": 1, "name": "one", "weight": 1}])
    stats = mv.refresh()
    assert not stats.full  # the kept traces still drive an incremental refresh
    check_view(mv, sources, SHIFTED_JOIN)


def test_incremental_refresh_reads_changed_rows_where_they_are(
    catalog: Catalog, sources: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = PLANS["map_filter"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    sources.write("items", "upsert", item_rows(range(10, 20), label="b"))
    sources.write("items", "delete", item_rows(range(50, 52)))

    def no_lookup(*args: Any) -> None:
        raise AssertionError("an incremental refresh looked keys up instead of reading the change log's locations")

    monkeypatch.setattr(evaluate, "locate", no_lookup)
    stats = mv.refresh()
    assert (stats.full, stats.keys_recomputed) == (False, 12)
    check_view(mv, sources, plan)


def test_full_refresh_replaces_the_content_in_one_commit(catalog: Catalog, sources: Sources) -> None:
    plan = PLANS["map_filter"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    old_files = set(mv.dataset.files())
    head = mv.dataset.snapshot().id
    sources.write("items", "upsert", item_rows(range(3), label="b"))
    stats = mv.refresh(full=True)
    snap = mv.dataset.snapshot()
    assert (stats.full, snap.id, snap.operation) == (True, head + 1, "replace")
    assert not old_files & set(mv.dataset.files())  # new files only, no deletion vectors over old ones
    assert mv.dataset.manifest().column("dv").null_count == mv.dataset.manifest().num_rows
    check_view(mv, sources, plan)
    # The change log of the replace lists every key, but diff() and a dependent view see only real changes.
    changed = mv.dataset.diff(head)
    assert sorted(changed.column("id").to_pylist()) == [0, 0, 1, 1]  # pre and post images; item 2 is filtered out
    assert mv.dataset.history(4).column("_change_type").to_pylist() == ["update", "insert"]  # rewritten by the replace


@pytest.mark.parametrize("concurrent", ["upsert", "delete", "compact"])
def test_replace_lands_after_a_concurrent_commit(catalog: Catalog, concurrent: str) -> None:
    ds = catalog.create_dataset("t", ITEMS.schema, ["id"], options=WriteOptions(max_rows_per_file=8))
    ds.append(ITEMS.table(item_rows(range(20))))
    ds.delete(keys=[0, 1, 2])  # deletion vectors, so a compaction has files to rewrite
    other = Catalog(catalog.uri).dataset("t")  # another writer: its own handle, log and caches
    writes = {
        "upsert": lambda: other.upsert(ITEMS.table(item_rows(range(25, 40), label="c"))),
        "delete": lambda: other.delete(keys=[5, 15]),
        "compact": lambda: other.compact(target_rows=64, max_deleted_fraction=0.0),
    }
    fired: list[int] = []

    def interfere(step: str) -> None:
        if step == "commit.after_manifest" and not fired:  # the replace is about to publish: commit first
            fired.append(-1)  # before writing: the concurrent commit passes this checkpoint too
            fired[0] = writes[concurrent]().id

    new_rows = item_rows(range(10, 30), label="b")
    faults.set_hook(interfere)
    try:
        snap = ds.replace(ITEMS.table(new_rows))
    finally:
        faults.set_hook(None)
    assert fired and snap.parent_id == fired[0] and snap.operation == "replace"
    assert table_rows(ds.read_all()) == sort_rows(new_rows)  # a replace defines the whole content
    before = {r["id"]: r for r in ds.read_all(version=fired[0]).to_pylist()}
    after = {r["id"]: r for r in new_rows}
    diff = ds.diff(fired[0], snap.id)  # the change log is relative to the concurrent commit it landed on
    kinds = {(r["id"], r["_change_type"]) for r in diff.select(["id", "_change_type"]).to_pylist()}
    expected = {(k, "insert") for k in after.keys() - before.keys()} | {(k, "delete") for k in before.keys() - after}
    changed = [k for k in before.keys() & after.keys() if before[k] != after[k]]
    expected |= {(k, t) for k in changed for t in ("update_preimage", "update_postimage")}
    assert kinds == expected
    ds.validate()


def test_view_of_a_view_refreshes_after_a_full_recompute(catalog: Catalog, sources: Sources) -> None:
    items = sources.datasets["items"]
    upstream = catalog.materialize("up", items.map_batches(u.tag_items, u.TAGGED_SCHEMA))
    downstream = catalog.materialize("down", upstream.dataset.filter(u.score2_not_multiple_of_3))
    sources.write("items", "upsert", item_rows(range(5), label="b"))
    sources.write("items", "delete", item_rows(range(90, 100)))
    upstream.refresh(full=True)
    stats = downstream.refresh()
    assert not stats.full
    assert table_rows(downstream.read_all()) == sort_rows(
        [r for r in map(u.tag_items_row, sources.models["items"].head.values()) if u.score2_not_multiple_of_3_row(r)]
    )


def test_redefining_a_view_needs_replace_and_recomputes(catalog: Catalog, sources: Sources) -> None:
    items = sources.datasets["items"]
    v1 = items.map_batches(u.tag_items, u.TAGGED_SCHEMA, version="1")
    mv = catalog.materialize("mv", v1)
    head = mv.dataset.snapshot().id
    assert catalog.materialize("mv", v1).dataset.snapshot().id == head  # the same definition: nothing to do
    v2 = items.map_batches(u.tag_items_v2, u.TAGGED_SCHEMA, version="2")
    with pytest.raises(DatasetExistsError, match="replace=True"):
        catalog.materialize("mv", v2)
    assert catalog.materialized_view("mv").node == v1.node
    redefined = catalog.materialize("mv", v2, replace=True)
    snap = redefined.dataset.snapshot()
    assert (snap.id, snap.operation) == (head + 1, "replace")
    expected = sort_rows([u.tag_items_v2_row(r) for r in sources.models["items"].head.values()])
    assert table_rows(catalog.materialized_view("mv").read_all()) == expected
    assert catalog.materialized_view("mv").node == v2.node
    assert table_rows(redefined.read_all(version=head)) == sort_rows(  # earlier versions keep their rows
        [u.tag_items_row(r) for r in sources.models["items"].head.values()]
    )
    with pytest.raises(SchemaMismatchError, match="keep the output schema"):
        catalog.materialize("mv", items.filter(u.label_not_null), replace=True)
    assert catalog.materialize("mv", v2).refresh().changed is False


def test_schema_inference_looks_past_filtered_rows(catalog: Catalog) -> None:
    src = Sources(catalog)
    src.write("items", "append", [*item_rows(range(10), label=None), *item_rows(range(10, 20))])  # 10 fail first
    view = src.datasets["items"].filter(u.label_not_null).map_batches(u.tag_items)
    mv = catalog.materialize("mv", view)
    assert mv.dataset.schema.names == u.TAGGED_SCHEMA.names


# ----- crashes and concurrent refreshes -------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_sigkill_during_refresh_keeps_previous_version(
    catalog: Catalog, catalog_root: Path, sources: Sources, spawn: SpawnContext, full: bool
) -> None:
    plan = PLANS["left_join"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    before_head, before_rows = mv.dataset.snapshot().id, table_rows(mv.read_all())
    before_pinned = mv.reflects()
    sources.write("items", "upsert", item_rows(range(5), label="b"))
    sources.write("cats", "upsert", [{"cat_id": 1, "name": "renamed", "weight": 1}])

    child = spawn.Process(target=refresh_view_and_die, args=(str(catalog_root), "mv", "commit.before_log", full))
    child.start()
    child.join(60)
    assert child.exitcode == -9  # killed at the checkpoint, with its data files written but not committed

    reopened = catalog.materialized_view("mv")  # a new handle: nothing cached from before the crash
    assert reopened.dataset.snapshot().id == before_head
    assert reopened.reflects() == before_pinned
    assert table_rows(reopened.read_all()) == before_rows
    assert (catalog_root / "mv" / LEASE_FILE).exists()  # the dead process's lease is still there...
    stats = reopened.refresh(full=full)  # ...and is taken over: same host, its pid is gone
    assert stats.changed and stats.full == full
    check_view(reopened, sources, plan)
    assert not (catalog_root / "mv" / LEASE_FILE).exists()


def test_failing_function_mid_refresh_keeps_previous_version(
    catalog: Catalog, catalog_root: Path, sources: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = PLANS["map_filter"]
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    before_head, before_rows = mv.dataset.snapshot().id, table_rows(mv.read_all())
    monkeypatch.setattr(evaluate, "BATCH_ROWS", 4)  # many batches: the failure comes after some succeeded
    monkeypatch.setenv(u.FAIL_ON_LABEL, "boom")
    sources.write("items", "upsert", [*item_rows(range(0, 30), label="b"), *item_rows(range(30, 31), label="boom")])
    with pytest.raises(RuntimeError, match="injected failure"):
        mv.refresh()
    assert mv.dataset.snapshot().id == before_head
    assert table_rows(mv.read_all()) == before_rows
    assert not (catalog_root / "mv" / LEASE_FILE).exists()  # released on the way out
    monkeypatch.delenv(u.FAIL_ON_LABEL)
    assert mv.refresh().changed
    check_view(mv, sources, plan)


def test_second_refresh_at_once_is_refused(
    catalog: Catalog,
    sources: Sources,
    spawn: SpawnContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "release").touch()  # the first refresh (materialize, in this process) runs straight through
    monkeypatch.setenv(u.GATE_DIR, str(gate))  # the spawned child inherits it
    items = sources.datasets["items"]
    mv = catalog.materialize("mv", items.map_batches(u.gated_tag_items, u.TAGGED_SCHEMA))
    (gate / "release").unlink()
    (gate / "entered").unlink()
    sources.write("items", "upsert", item_rows(range(3), label="b"))
    child = spawn.Process(target=refresh_view, args=(catalog.uri, "mv"))
    child.start()
    try:
        wait_for(gate / "entered", child)  # the child holds the lease and sits inside the function
        with pytest.raises(RefreshInProgressError, match="'mv' is being refreshed"):
            mv.refresh()
    finally:
        (gate / "release").touch()
        child.join(60)
    assert child.exitcode == 0
    assert mv.refresh().changed is False  # the child's refresh landed; this one has nothing to do
    expected = sort_rows([u.tag_items_row(r) for r in sources.models["items"].head.values()])
    assert table_rows(mv.read_all()) == expected


def test_long_refresh_renews_its_lease(
    catalog: Catalog,
    catalog_root: Path,
    sources: Sources,
    spawn: SpawnContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "release").touch()
    monkeypatch.setenv(u.GATE_DIR, str(gate))
    mv = catalog.materialize("mv", sources.datasets["items"].map_batches(u.gated_tag_items, u.TAGGED_SCHEMA))
    (gate / "release").unlink()
    (gate / "entered").unlink()
    sources.write("items", "upsert", item_rows(range(3), label="b"))
    ttl = 0.4
    child = spawn.Process(target=refresh_view, args=(catalog.uri, "mv", False, ttl))
    child.start()
    try:
        wait_for(gate / "entered", child)
        time.sleep(3 * ttl)  # well past the lease's first expiry: only renewals keep it
        lock = json.loads((catalog_root / "mv" / LEASE_FILE).read_text())
        assert lock["expires"] > time.time()
        with pytest.raises(RefreshInProgressError):
            mv.refresh()
    finally:
        (gate / "release").touch()
        child.join(60)
    assert child.exitcode == 0
    assert not (catalog_root / "mv" / LEASE_FILE).exists()
    expected = sort_rows([u.tag_items_row(r) for r in sources.models["items"].head.values()])
    assert table_rows(mv.read_all()) == expected


def test_dead_refreshers_lease_expires(catalog: Catalog, catalog_root: Path, sources: Sources) -> None:
    mv = catalog.materialize("mv", PLANS["map_filter"].build(*sources.datasets.values()))
    sources.write("items", "upsert", item_rows(range(3), label="b"))
    lock = catalog_root / "mv" / LEASE_FILE
    # A refresher on another machine: its process cannot be checked, only its lease's expiry.
    held = {"host": "elsewhere", "pid": 1, "token": "t", "expires": time.time() + 60}
    lock.write_text(json.dumps(held))
    with pytest.raises(RefreshInProgressError):
        mv.refresh()
    lock.write_text(json.dumps({**held, "expires": time.time() - 1}))  # it stopped renewing: expired
    assert mv.refresh().changed
    assert not lock.exists()
    check_view(mv, sources, PLANS["map_filter"])


def test_lease_lost_during_a_streamed_full_refresh_is_not_committed(
    catalog: Catalog, catalog_root: Path, sources: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = PLANS["map_filter"]  # no join: a full refresh computes its rows while the replace writes them
    mv = catalog.materialize("mv", plan.build(*sources.datasets.values()))
    before_head, before_rows = mv.dataset.snapshot().id, table_rows(mv.read_all())
    data_files = set((catalog_root / "mv" / "data").iterdir())
    sources.write("items", "upsert", item_rows(range(5), label="b"))
    monkeypatch.setattr(materialized, "RefreshLease", functools.partial(lease.RefreshLease, ttl_seconds=0.2))
    monkeypatch.setattr(evaluate, "SCAN_ROWS", 10)  # many batches: the takeover comes mid-stream
    monkeypatch.setattr(evaluate, "BATCH_ROWS", 10)
    streamed = evaluate.stream

    def taken_over_midway(node: Any, inputs: Any) -> Iterator[Any]:
        for i, part in enumerate(streamed(node, inputs)):
            if i == 1:  # another refresher takes the lock over; the heartbeat notices within the TTL
                (catalog_root / "mv" / LEASE_FILE).write_text(json.dumps({"token": "someone else"}))
                time.sleep(0.5)
            yield part

    monkeypatch.setattr(materialized, "stream", taken_over_midway)
    with pytest.raises(lease.LeaseLostError, match="lost its lease"):
        mv.refresh(full=True)
    assert mv.dataset.snapshot().id == before_head
    assert table_rows(mv.read_all()) == before_rows
    assert set((catalog_root / "mv" / "data").iterdir()) == data_files  # nothing written is left behind
    assert json.loads((catalog_root / "mv" / LEASE_FILE).read_text())["token"] == "someone else"


def test_lease_lost_to_another_refresher_is_not_committed(catalog: Catalog, catalog_root: Path) -> None:
    held = lease.RefreshLease(catalog._store.child("mv"), "mv", ttl_seconds=60)
    with held:
        (catalog_root / "mv" / LEASE_FILE).write_text(json.dumps({"token": "someone else"}))
        held.renew()
        with pytest.raises(lease.LeaseLostError, match="lost its lease"):
            held.check()
    assert (catalog_root / "mv" / LEASE_FILE).exists()  # not ours: left alone


def test_leases_share_one_heartbeat_that_stops_renewing_at_release(catalog: Catalog, catalog_root: Path) -> None:
    lock = catalog_root / "mv" / LEASE_FILE
    for _ in range(3):  # one after another, as refreshes come: the same thread renews each
        with lease.RefreshLease(catalog._store.child("mv"), "mv", ttl_seconds=0.2):
            first = json.loads(lock.read_text())["expires"]
            time.sleep(0.3)  # past the first expiry: only renewals keep the lease
            assert json.loads(lock.read_text())["expires"] > max(first, time.time())
        assert not lock.exists()
        time.sleep(0.1)  # a renewal after the release would write the lock again
        assert not lock.exists()
    assert [t.name for t in threading.enumerate()].count("lease-heartbeat") == 1


def wait_for(path: Path, child: Any, seconds: float = 60.0) -> None:
    """Wait until `path` exists (failing early if the child died)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert child.is_alive(), f"child exited with {child.exitcode} before creating {path.name}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


# ----- the Ray engine ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A 2-CPU local Ray whose workers can import the test functions (the driver's sys.path is not theirs)."""
    ray = pytest.importorskip("ray")
    here = Path(__file__).parent
    path = os.pathsep.join([str(here.parent.parent), str(here)])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_engine_matches_local(
    local_ray: None, catalog: Catalog, sources: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materialized, "CHUNK_KEYS", 16)  # several Ray tasks per refresh
    plan = PLANS["inner_join"]
    view = plan.build(*sources.datasets.values())
    on_ray = catalog.materialize("on_ray", view, engine="ray")
    local = catalog.materialize("local", view)
    assert table_rows(on_ray.read_all()) == table_rows(local.read_all()) == sources.expected(plan)
    sources.write("items", "upsert", item_rows(range(40, 60), label="b", cat_id=3))
    sources.write("cats", "upsert", [{"cat_id": 1, "name": "renamed", "weight": 2}])
    ray_stats, local_stats = on_ray.refresh(engine="ray"), local.refresh()
    assert (ray_stats.full, ray_stats.keys_recomputed) == (local_stats.full, local_stats.keys_recomputed)
    assert table_rows(on_ray.read_all()) == table_rows(local.read_all()) == sources.expected(plan)

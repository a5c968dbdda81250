"""Model-based test of version control: branches, merge, restore, compact, expire and diff.

Snapshot ids are shared by all branches, so the model keeps one version per id (a `Model` whose `versions`
list is indexed by snapshot id; a branch deletion holds an empty placeholder) plus the lineage: parents,
merge parents, branch heads, tags and which snapshots are still live. Merges are predicted from the
common ancestor's content, diffs between any two live versions are the model's set difference, and the
whole machine runs with and without row images in the change logs: both must give the same answers.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _model import LAYOUTS, SINGLE_KEY, InputForm, Key, Layout, MakeDataset, Model, Row, as_input, reachable
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_model import ENTRIES, FORM, KEY_INDEX, LABELS, ROWS_PER_FILE, Entry, key_universe

from storage import (
    Catalog,
    CommitConflictError,
    Dataset,
    MergeConflictError,
    PrimaryKeyConflictError,
    Snapshot,
    VersionNotFoundError,
    WriteOptions,
)

MAX_BRANCHES = 4  # main included: few enough that merges often meet related branches
Strategy = Literal["ours", "theirs"] | None
STRATEGY = st.sampled_from([None, None, "ours", "theirs"])


@dataclass(frozen=True)
class Node:
    """One log entry of the model: its first parent, the source merged in (if a merge) and its branch."""

    parent: int | None
    branch: str
    merge_parent: int | None = None
    has_content: bool = True  # False for a branch deletion


def three_way(
    base: dict[Key, Row], ours: dict[Key, Row], theirs: dict[Key, Row], strategy: Strategy
) -> tuple[dict[Key, Row], set[Key]]:
    """The merged content and the keys both sides changed differently (by content, not by file location).

    A key theirs changed and ours did not takes theirs' state; a change both made alike applies once; a
    key both changed differently is a conflict, settled by `strategy` when given.
    """
    merged = dict(ours)
    conflicts: set[Key] = set()
    for key in base.keys() | ours.keys() | theirs.keys():
        b, o, t = base.get(key), ours.get(key), theirs.get(key)
        if t in (b, o):
            continue
        if o != b and strategy != "theirs":
            if strategy is None:
                conflicts.add(key)
            continue
        if t is None:
            del merged[key]
        else:
            merged[key] = t
    return merged, conflicts


class VersionsMachine(RuleBasedStateMachine):
    """One dataset with branches, one model, random version-control operations on both."""

    def __init__(self, layout: Layout, row_images: bool, base: Path) -> None:
        super().__init__()
        self.layout = layout
        self.keys = key_universe(layout)
        self.tmp = Path(tempfile.mkdtemp(dir=base))  # one directory per example: examples never share state
        options = WriteOptions(max_rows_per_file=ROWS_PER_FILE, log_row_images=row_images)
        self.ds = Catalog(self.tmp / "lake").create_dataset(
            "versions", layout.schema, primary_keys=list(layout.primary_keys), options=options
        )
        self.model = Model(layout)  # versions[snapshot id]; snapshot 0 is the empty dataset on main
        self.nodes: dict[int, Node] = {0: Node(None, "main")}
        self.live: set[int] = {0}
        self.heads: dict[str, int] = {"main": 0}
        self.tags: dict[str, int] = {}
        self.next_name = 0

    # ----- model helpers ------------------------------------------------------------------------------

    def rows(self, entries: list[Entry]) -> list[Row]:
        return [self.layout.row(self.keys[i], label, score) for i, label, score in entries]

    def state(self, branch: str) -> dict[Key, Row]:
        return self.model.versions[self.heads[branch]]

    def handle(self, branch: str) -> Dataset:
        return self.ds if branch == "main" else self.ds.branch(branch)

    def content_ids(self) -> list[int]:
        """Live snapshots that have content (every one but branch deletions)."""
        return sorted(s for s in self.live if self.nodes[s].has_content)

    def fresh_name(self, prefix: str) -> str:
        self.next_name += 1
        return f"{prefix}{self.next_name}"

    def add(self, node: Node, state: dict[Key, Row]) -> int:
        """Record a new log entry; ids are dense and shared by all branches."""
        sid = len(self.model.versions)
        self.model.versions.append(state)
        self.nodes[sid] = node
        self.live.add(sid)
        return sid

    def commit(
        self, branch: str, snap: Snapshot, operation: str, state: dict[Key, Row], merged: int | None = None
    ) -> None:
        """A successful write: exactly one new snapshot on `branch`, on top of its previous head."""
        head = self.heads[branch]
        sid = self.add(Node(head, branch, merged), state)
        assert (snap.id, snap.parent_id, snap.branch, snap.operation) == (sid, head, branch, operation)
        self.heads[branch] = sid

    def ancestors(self, sid: int) -> set[int]:
        """`sid` and what it descends from through first and merge parents; an expired entry ends its path."""

        def parents(s: int) -> list[int]:
            node = self.nodes[s] if s in self.live else None
            return [p for p in (node.parent, node.merge_parent) if p is not None] if node else []

        return reachable(sid, parents)

    def common_ancestor(self, a: int, b: int) -> int | None:
        """The newest live snapshot both descend from (ids grow with time)."""
        return max(self.ancestors(a) & self.ancestors(b) & self.live, default=None)

    def kept_by_expire(self, keep_last: int) -> set[int]:
        """What expire(keep_last=) keeps: the newest entry, tagged snapshots, branch deletions and the newest
        `keep_last` entries of each branch's parent chain (which runs on into the branch it started from)."""
        keep = {max(self.nodes), *self.tags.values()}
        keep |= {s for s in self.live if not self.nodes[s].has_content}
        for head in self.heads.values():
            chain: int | None = head
            for _ in range(keep_last):
                if chain is None or chain not in self.live:
                    break
                keep.add(chain)
                chain = self.nodes[chain].parent
        return keep & self.live

    def assert_version(self, rows: list[Row], sid: int) -> None:
        assert self.layout.sorted_rows(rows) == self.model.rows(sid), f"snapshot {sid}"

    # ----- writes -------------------------------------------------------------------------------------

    @initialize(entries=ENTRIES, form=FORM)
    def initial_rows(self, entries: list[Entry], form: InputForm) -> None:
        rows = self.rows(entries)
        snap = self.ds.upsert(as_input(self.layout, rows, form))
        self.commit("main", snap, "upsert", {self.layout.key(r): r for r in rows})

    @rule(data=st.data(), entries=ENTRIES, form=FORM, mode=st.sampled_from(["upsert", "upsert", "insert", "append"]))
    def write(self, data: st.DataObject, entries: list[Entry], form: InputForm, mode: str) -> None:
        branch = data.draw(st.sampled_from(sorted(self.heads)), label="branch")
        rows = self.rows(entries)
        head = self.state(branch)
        existing = {self.layout.key_arg(self.layout.key(r)) for r in rows if self.layout.key(r) in head}
        if mode != "upsert" and existing:
            with pytest.raises(PrimaryKeyConflictError) as info:
                getattr(self.handle(branch), mode)(as_input(self.layout, rows, form))
            assert set(info.value.keys) == existing
            return
        snap = getattr(self.handle(branch), mode)(as_input(self.layout, rows, form))
        self.commit(branch, snap, mode, {**head, **{self.layout.key(r): r for r in rows}})

    # Both sides of a fork changing overlapping keys is what makes merges conflict; one rule doing both
    # makes that common in short runs.
    @precondition(lambda self: len(self.heads) > 1)
    @rule(data=st.data(), ours=ENTRIES, theirs=ENTRIES)
    def upsert_two_branches(self, data: st.DataObject, ours: list[Entry], theirs: list[Entry]) -> None:
        branches = data.draw(st.permutations(sorted(self.heads)), label="branches")[:2]
        for branch, entries in zip(branches, (ours, theirs), strict=True):
            rows = self.rows(entries)
            snap = self.handle(branch).upsert(self.layout.table(rows))
            self.commit(branch, snap, "upsert", {**self.state(branch), **{self.layout.key(r): r for r in rows}})

    @rule(
        data=st.data(),
        by_label=st.booleans(),
        indexes=st.lists(KEY_INDEX, unique=True, max_size=6),
        label=st.sampled_from(LABELS),
    )
    def delete(self, data: st.DataObject, by_label: bool, indexes: list[int], label: str) -> None:
        branch = data.draw(st.sampled_from(sorted(self.heads)), label="branch")
        head = self.state(branch)
        if by_label:
            snap = self.handle(branch).delete(pc.field("label") == label)
            state = {k: r for k, r in head.items() if r["label"] != label}
        else:
            snap = self.handle(branch).delete(keys=[self.layout.key_arg(self.keys[i]) for i in indexes])
            gone = {self.keys[i] for i in indexes}
            state = {k: r for k, r in head.items() if k not in gone}
        self.commit(branch, snap, "delete", state)

    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        branch = data.draw(st.sampled_from(sorted(self.heads)), label="branch")
        version = data.draw(st.sampled_from(self.content_ids()), label="version")
        snap = self.handle(branch).restore(version)
        self.commit(branch, snap, "restore", dict(self.model.versions[version]))

    @rule(
        data=st.data(),
        target_rows=st.sampled_from([None, 2, 8]),
        max_deleted_fraction=st.sampled_from([0.0, 0.2, 0.5]),
    )
    def compact(self, data: st.DataObject, target_rows: int | None, max_deleted_fraction: float) -> None:
        branch = data.draw(st.sampled_from(sorted(self.heads)), label="branch")
        head = self.heads[branch]
        snap = self.handle(branch).compact(target_rows=target_rows, max_deleted_fraction=max_deleted_fraction)
        if snap.id != head:  # else nothing was worth compacting
            self.commit(branch, snap, "compact", dict(self.model.versions[head]))

    # ----- branches and merges ------------------------------------------------------------------------

    @precondition(lambda self: len(self.heads) < MAX_BRANCHES)
    @rule(data=st.data(), by_name=st.booleans())
    def create_branch(self, data: st.DataObject, by_name: bool) -> None:
        # Mostly from a branch head (as branches usually start), else from any live version.
        heads = sorted(set(self.heads.values()))
        source = data.draw(st.sampled_from(heads) | st.sampled_from(self.content_ids()), label="from_version")
        named = [b for b, head in sorted(self.heads.items()) if head == source]
        name = self.fresh_name("b")
        handle = self.ds.create_branch(name, from_version=named[0] if by_name and named else source)
        assert handle.branch_name == name
        self.heads[name] = self.add(Node(source, name), dict(self.model.versions[source]))

    @precondition(lambda self: len(self.heads) > 1)
    @rule(data=st.data())
    def delete_branch(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(b for b in self.heads if b != "main")), label="branch")
        self.ds.delete_branch(name)
        self.add(Node(self.heads.pop(name), name, has_content=False), {})
        with pytest.raises(VersionNotFoundError, match=name):
            self.ds.branch(name)

    @rule(data=st.data(), strategy=STRATEGY)
    def merge(self, data: st.DataObject, strategy: Strategy) -> None:
        target = data.draw(st.sampled_from(sorted(self.heads)), label="target")
        source = data.draw(st.sampled_from(sorted(self.heads)), label="source")
        self.check_merge(target, source, strategy)

    # Merges to and from main are the usual workflow, and two related branches reach the three-way paths
    # (fast-forward, conflicts) more often than a random pair.
    @precondition(lambda self: len(self.heads) > 1)
    @rule(data=st.data(), strategy=STRATEGY, into_main=st.booleans())
    def merge_with_main(self, data: st.DataObject, strategy: Strategy, into_main: bool) -> None:
        other = data.draw(st.sampled_from(sorted(b for b in self.heads if b != "main")), label="branch")
        self.check_merge(*(("main", other) if into_main else (other, "main")), strategy)

    def check_merge(self, target: str, source: str, strategy: Strategy) -> None:
        """Merge `source` into `target` in the engine and the model and compare the outcome."""
        ours, theirs = self.heads[target], self.heads[source]
        ancestor = self.common_ancestor(ours, theirs)
        handle = self.handle(target)
        if ancestor is None:  # expire() took every shared snapshot
            with pytest.raises(CommitConflictError, match="share no live snapshot"):
                handle.merge(source, strategy=strategy)
            return
        if ancestor == theirs:  # nothing to bring over
            assert handle.merge(source, strategy=strategy).id == ours
            return
        versions = self.model.versions
        merged, conflicts = three_way(versions[ancestor], versions[ours], versions[theirs], strategy)
        if conflicts:
            with pytest.raises(MergeConflictError) as info:
                handle.merge(source)
            expected = {self.layout.key_arg(k) for k in conflicts}
            assert set(info.value.keys) == expected
            assert len(info.value.keys) == len(expected)
            assert all(repr(k) in str(info.value) for k in info.value.keys[:10])
            if strategy is None:
                return  # the invariant checks nothing was written
        snap = handle.merge(source, strategy=strategy)
        self.commit(target, snap, "merge", merged, merged=theirs)
        assert snap.summary["merge_parent"] == theirs
        assert snap.summary.get("fast_forward", False) == (ancestor == ours)

    # ----- tags and maintenance -----------------------------------------------------------------------

    @rule(data=st.data(), keep_last=st.integers(1, 5), tag=st.booleans())
    def expire_and_vacuum(self, data: st.DataObject, keep_last: int, tag: bool) -> None:
        if tag:  # tagged snapshots survive expire()
            version = data.draw(st.sampled_from(self.content_ids()), label="tagged")
            name = self.fresh_name("t")
            assert self.ds.tag(name, version=version).id == version
            self.tags[name] = version
        expired = self.live - self.kept_by_expire(keep_last)
        stats = self.ds.expire(keep_last=keep_last)
        assert sorted(stats.expired) == sorted(expired)
        self.live -= expired
        self.ds.vacuum(grace_period=timedelta(0))
        for sid in sorted(expired):
            with pytest.raises(VersionNotFoundError, match=str(sid)):
                self.ds.read_all(version=sid)

    # ----- reads --------------------------------------------------------------------------------------

    @rule(data=st.data(), to_head=st.booleans(), batch=st.none() | st.integers(1, 4))
    def diff(self, data: st.DataObject, to_head: bool, batch: int | None) -> None:
        start = data.draw(st.sampled_from(self.content_ids()), label="start")
        if to_head:  # end defaults to the handle's branch head
            branch = data.draw(st.sampled_from(sorted(self.heads)), label="branch")
            end, table = self.heads[branch], self.handle(branch).diff(start)
        else:
            end = data.draw(st.sampled_from(self.content_ids()), label="end")
            table = self.ds.diff(start, end)
        if batch is not None:  # the stream form: parts of at most `batch` keys (two rows for an update)
            parts = list(self.ds.iter_diff(start, end, batch_size=batch))
            assert all(0 < p.num_rows <= 2 * batch for p in parts), [p.num_rows for p in parts]
            table = pa.concat_tables(parts) if parts else table.schema.empty_table()
        assert table.column_names == [*self.layout.schema.names, "_change_type"]
        got = sorted(
            ((d.pop("_change_type"), d) for d in table.to_pylist()), key=lambda e: (e[0], self.layout.key(e[1]))
        )
        assert got == self.model.diff(start, end), f"diff({start}, {end})"

    @invariant()
    def heads_match_model(self) -> None:
        assert self.ds.branches() == self.heads
        for branch, sid in self.heads.items():
            self.assert_version(self.handle(branch).read_all().to_pylist(), sid)

    def teardown(self) -> None:
        try:
            for sid in self.content_ids():
                self.assert_version(self.ds.read_all(version=sid).to_pylist(), sid)
            for sid in sorted(set(self.nodes) - set(self.content_ids())):  # expired, or a branch deletion
                with pytest.raises(VersionNotFoundError):
                    self.ds.read_all(version=sid)
            history = self.ds.versions()
            ids = history.column("snapshot_id").to_pylist()
            assert ids == sorted(self.live)
            assert history.column("parent_id").to_pylist() == [self.nodes[s].parent for s in ids]
            assert history.column("branch").to_pylist() == [self.nodes[s].branch for s in ids]
            assert self.ds.tags() == self.tags
            self.ds.validate()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _run(layout: Layout, row_images: bool, base: Path, max_examples: int, steps: int) -> None:
    run_state_machine_as_test(
        lambda: VersionsMachine(layout, row_images, base),
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=True,  # the same sequences on every run and machine: CI failures reproduce
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


ROW_IMAGES = pytest.mark.parametrize("row_images", [False, True], ids=["files", "row_images"])
LAYOUT = pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)


@ROW_IMAGES
@LAYOUT
def test_versions_match_model(layout: Layout, row_images: bool, tmp_path: Path) -> None:
    _run(layout, row_images, tmp_path, max_examples=20, steps=25)


# Minutes per variant: part of `make reliability` (its last lane), not of `make test`.
@pytest.mark.reliability
@ROW_IMAGES
@LAYOUT
def test_versions_match_model_long(layout: Layout, row_images: bool, tmp_path: Path) -> None:
    _run(layout, row_images, tmp_path, max_examples=60, steps=40)


# ----- regressions the machine found ------------------------------------------------------------------


def test_merge_ignores_rows_rewritten_unchanged(make_dataset: MakeDataset) -> None:
    """An upsert of an equal row moves it to a new file but changes nothing: the other side's change to
    that key applies without a conflict, in either merge direction."""
    ds = make_dataset(SINGLE_KEY)
    ds.upsert(SINGLE_KEY.table([SINGLE_KEY.row((0,), "cat", None), SINGLE_KEY.row((1,), "cat", 1)]))
    dev = ds.create_branch("dev")
    ds.upsert(SINGLE_KEY.table([SINGLE_KEY.row((0,), "cat", None)]))  # same content, new location
    dev.upsert(SINGLE_KEY.table([SINGLE_KEY.row((0,), "dog", 2)]))
    expected = [SINGLE_KEY.row((0,), "dog", 2), SINGLE_KEY.row((1,), "cat", 1)]
    dev.merge("main")
    assert SINGLE_KEY.sorted_rows(dev.read_all().to_pylist()) == expected
    ds.merge("dev")
    assert SINGLE_KEY.sorted_rows(ds.read_all().to_pylist()) == expected
    ds.validate()


def test_diff_reads_row_images_of_inserts(catalog: Catalog) -> None:
    """A change log's image columns are null for changes without that image (no pre-image for an insert);
    diff() must still read them, although the key fields of the images are non-nullable columns."""
    layout = SINGLE_KEY
    ds = catalog.create_dataset("images", layout.schema, primary_keys=["id"], options=WriteOptions(log_row_images=True))
    first = ds.upsert(layout.table([layout.row((0,), "cat", None)]))
    second = ds.upsert(layout.table([layout.row((0,), "dog", 1), layout.row((1,), "bird", None)]))
    assert ds.diff(0, first.id).to_pylist() == [{"id": 0, "label": "cat", "score": None, "_change_type": "insert"}]
    assert ds.diff(first.id, second.id).to_pylist() == [
        {"id": 1, "label": "bird", "score": None, "_change_type": "insert"},
        {"id": 0, "label": "cat", "score": None, "_change_type": "update_preimage"},
        {"id": 0, "label": "dog", "score": 1, "_change_type": "update_postimage"},
    ]


def _six_rows(make_dataset: MakeDataset) -> Dataset:
    """Keys 0-5 in two files (4 + 2 rows), so deleting key 1 leaves a file compact() rewrites."""
    ds = make_dataset(SINGLE_KEY, max_rows_per_file=4)
    ds.upsert(SINGLE_KEY.table([SINGLE_KEY.row((i,), "cat", i) for i in range(6)]))
    return ds


def test_merge_after_target_compacted(make_dataset: MakeDataset) -> None:
    """Compaction moved the target's rows since the fork: the merge replaces them where they are now
    (it used to delete them at their old location, a file the target no longer has)."""
    ds = _six_rows(make_dataset)
    dev = ds.create_branch("dev")
    dev.upsert(SINGLE_KEY.table([SINGLE_KEY.row((0,), "dog", 9)]))
    ds.delete(keys=[1])
    assert ds.compact().operation == "compact"
    ds.merge("dev")
    expected = [SINGLE_KEY.row((0,), "dog", 9), *(SINGLE_KEY.row((i,), "cat", i) for i in range(2, 6))]
    assert SINGLE_KEY.sorted_rows(ds.read_all().to_pylist()) == expected
    ds.validate()


def test_merge_after_fast_forward_of_compaction(make_dataset: MakeDataset) -> None:
    """A fast-forward logs the moves of a compaction on the source, so a later merge into the target finds
    the moved rows."""
    ds = _six_rows(make_dataset)
    dev, other = ds.create_branch("dev"), ds.create_branch("other")
    dev.delete(keys=[1])
    assert dev.compact().operation == "compact"
    assert ds.merge("dev").summary["fast_forward"]
    other.upsert(SINGLE_KEY.table([SINGLE_KEY.row((0,), "dog", 9)]))
    ds.merge("other")
    expected = [SINGLE_KEY.row((0,), "dog", 9), *(SINGLE_KEY.row((i,), "cat", i) for i in range(2, 6))]
    assert SINGLE_KEY.sorted_rows(ds.read_all().to_pylist()) == expected
    assert ds.diff(0, ds.snapshot().id).num_rows == len(expected)  # all inserts since the empty start
    ds.validate()

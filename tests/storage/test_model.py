"""Model-based test: random write/restore/tag sequences against a dataset and a plain in-memory model.

Every write is applied to both; after each step the newest version is compared in full, read-only rules
compare older versions, filtered reads, counts and take(), and the teardown compares every version by
snapshot id and by tag. Snapshots are immutable, so a version that matches at the end matched throughout.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _disk import nothing_written
from _model import INPUT_FORMS, LAYOUTS, InputForm, Key, Layout, Model, Row, as_input, label_is, score_between
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

from storage import (
    ArrowCacheOptions,
    Catalog,
    InvalidInputError,
    PrimaryKeyConflictError,
    Snapshot,
    TagExistsError,
    VersionNotFoundError,
    WriteOptions,
)

# A small key space makes keys collide often: conflicts, updates and deletes of existing rows.
N_KEYS = 16
KEY_INDEX = st.integers(0, N_KEYS - 1)
LABELS = ("cat", "dog", "bird")
LABEL = st.sampled_from([*LABELS, None])
SCORE = st.sampled_from([None, *range(-3, 4)])
ENTRY = st.tuples(KEY_INDEX, LABEL, SCORE)
ENTRIES = st.lists(ENTRY, unique_by=lambda e: e[0], max_size=8)  # empty writes are allowed: still one snapshot
NONEMPTY_ENTRIES = st.lists(ENTRY, unique_by=lambda e: e[0], min_size=1, max_size=8)
FORM = st.sampled_from(INPUT_FORMS)
# Four rows per file: batches of up to eight rows span files, so upserts and deletes hit several files.
ROWS_PER_FILE = 4

Entry = tuple[int, str | None, int | None]


def key_universe(layout: Layout) -> list[Key]:
    """N_KEYS keys of the layout; for two key columns both columns vary."""
    if len(layout.primary_keys) == 1:
        return [(i,) for i in range(N_KEYS)]
    return [(("a", "b")[i % 2], i // 2) for i in range(N_KEYS)]


class DatasetMachine(RuleBasedStateMachine):
    """One dataset, one model, random operations on both."""

    def __init__(self, layout: Layout, base: Path, arrow_cache: bool = False) -> None:
        super().__init__()
        self.layout = layout
        self.keys = key_universe(layout)
        self.tmp = Path(tempfile.mkdtemp(dir=base))  # one directory per example: examples never share state
        # A budget of a few small files: reads fill, hit and evict entries all the time.
        cache = ArrowCacheOptions(str(self.tmp / "cache"), max_bytes=16_000) if arrow_cache else None
        self.catalog = Catalog(self.tmp / "lake", arrow_cache=cache)
        self.ds = self.catalog.create_dataset(
            "model",
            layout.schema,
            primary_keys=list(layout.primary_keys),
            options=WriteOptions(max_rows_per_file=ROWS_PER_FILE),
        )
        self.root = self.tmp / "lake" / "model"
        self.model = Model(layout)
        self.next_tag = 0

    # ----- helpers ------------------------------------------------------------------------------------

    def rows(self, entries: list[Entry]) -> list[Row]:
        return [self.layout.row(self.keys[i], label, score) for i, label, score in entries]

    def key_args(self, indexes: list[int]) -> list[Any]:
        return [self.layout.key_arg(self.keys[i]) for i in indexes]

    def expect_snapshot(self, snap: Snapshot, expected_id: int, operation: str) -> None:
        """Each successful write is exactly one new snapshot on main, on top of the previous head."""
        assert (snap.id, snap.parent_id, snap.branch, snap.operation) == (
            expected_id,
            expected_id - 1,
            "main",
            operation,
        )

    def assert_version(self, table: pa.Table, version: int) -> None:
        assert table.schema.names == [f.name for f in self.layout.schema]
        assert self.layout.sorted_rows(table.to_pylist()) == self.model.rows(version)

    # ----- writes -------------------------------------------------------------------------------------

    @initialize(entries=ENTRIES, form=FORM)
    def initial_rows(self, entries: list[Entry], form: InputForm) -> None:
        # Most sequences should start from a non-empty dataset, or deletes and restores have nothing to do.
        self.upsert(entries, form)

    @rule(entries=ENTRIES, form=FORM, mode=st.sampled_from(["append", "insert"]))
    def add_new_rows(self, entries: list[Entry], form: InputForm, mode: str) -> None:
        rows = self.rows(entries)
        existing = {self.layout.key_arg(k) for k in self.model.existing(rows)}
        if not existing:
            snap = getattr(self.ds, mode)(as_input(self.layout, rows, form))
            self.expect_snapshot(snap, self.model.upsert(rows), mode)
            return
        with nothing_written(self.ds, self.root), pytest.raises(PrimaryKeyConflictError) as info:
            getattr(self.ds, mode)(as_input(self.layout, rows, form))
        assert set(info.value.keys) == existing
        assert repr(info.value.keys[0]) in str(info.value)

    @rule(entries=ENTRIES, form=FORM)
    def upsert(self, entries: list[Entry], form: InputForm) -> None:
        rows = self.rows(entries)
        snap = self.ds.upsert(as_input(self.layout, rows, form))
        self.expect_snapshot(snap, self.model.upsert(rows), "upsert")

    @rule(
        entries=NONEMPTY_ENTRIES,
        data=st.data(),
        form=FORM,
        mode=st.sampled_from(["append", "insert", "upsert", "replace"]),
    )
    def write_duplicate_keys(self, entries: list[Entry], data: st.DataObject, form: InputForm, mode: str) -> None:
        rows = self.rows(entries)
        dup = {**data.draw(st.sampled_from(rows)), "label": "dup"}
        rows.insert(data.draw(st.integers(0, len(rows))), dup)
        key = self.layout.key_arg(self.layout.key(dup))
        # For append/insert an existing key in an earlier file-sized chunk may be reported first; either
        # error is right as long as nothing is written.
        conflict_possible = mode in ("append", "insert") and self.model.existing(rows)
        expected = (InvalidInputError, PrimaryKeyConflictError) if conflict_possible else InvalidInputError
        with nothing_written(self.ds, self.root), pytest.raises(expected) as info:
            getattr(self.ds, mode)(as_input(self.layout, rows, form))
        if isinstance(info.value, InvalidInputError):
            assert repr(key) in str(info.value)

    @rule(
        how=st.sampled_from(["keys", "key_table", "label", "score_range"]),
        indexes=st.lists(KEY_INDEX, unique=True, max_size=6),
        label=st.sampled_from(LABELS),
        lo=st.integers(-4, 4),
        span=st.integers(0, 3),
    )
    def delete(self, how: str, indexes: list[int], label: str, lo: int, span: int) -> None:
        # One rule for every kind of delete, so deletes are not picked three times as often as upserts.
        if how in ("keys", "key_table"):
            keys: Any = self.key_args(indexes)
            if how == "key_table":
                key_schema = pa.schema([self.layout.schema.field(k) for k in self.layout.primary_keys])
                keys = pa.Table.from_pylist(
                    [dict(zip(self.layout.primary_keys, self.keys[i], strict=True)) for i in indexes], key_schema
                )
            snap = self.ds.delete(keys=keys)
            expected = self.model.delete_keys(self.keys[i] for i in indexes)
        elif how == "label":
            snap = self.ds.delete(pc.field("label") == label)
            expected = self.model.delete_where(label_is(label))
        else:
            snap = self.ds.delete((pc.field("score") >= lo) & (pc.field("score") <= lo + span))
            expected = self.model.delete_where(score_between(lo, lo + span))
        self.expect_snapshot(snap, expected, "delete")

    @rule(entries=ENTRIES, form=FORM)
    def replace(self, entries: list[Entry], form: InputForm) -> None:
        rows = self.rows(entries)
        before = self.model.head_id
        snap = self.ds.replace(as_input(self.layout, rows, form))
        self.expect_snapshot(snap, self.model.replace(rows), "replace")
        # The change log of a replace compares keys only; diff() must still show just the rows that changed.
        diff = self.ds.diff(before, snap.id).to_pylist()
        got = sorted(((d.pop("_change_type"), d) for d in diff), key=lambda e: (e[0], self.layout.key(e[1])))
        assert got == self.model.diff(before, snap.id)

    @rule(data=st.data(), by_tag=st.booleans())
    def restore(self, data: st.DataObject, by_tag: bool) -> None:
        version = data.draw(st.integers(0, self.model.head_id), label="version")
        tags = [t for t, v in self.model.tags.items() if v == version]
        target = data.draw(st.sampled_from(tags), label="tag") if by_tag and tags else version
        snap = self.ds.restore(target)
        self.expect_snapshot(snap, self.model.restore(version), "restore")

    # ----- tags ---------------------------------------------------------------------------------------

    @rule(data=st.data())
    def tag(self, data: st.DataObject) -> None:
        version = data.draw(st.integers(0, self.model.head_id), label="version")
        name = f"t{self.next_tag}"
        self.next_tag += 1
        assert self.ds.tag(name, version=version).id == version
        self.model.tags[name] = version

    @precondition(lambda self: self.model.tags and self.model.head_id >= 1)
    @rule(data=st.data(), action=st.sampled_from(["untag", "move", "move_without_force"]))
    def change_tag(self, data: st.DataObject, action: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.model.tags)), label="tag")
        if action == "untag":
            self.ds.untag(name)
            del self.model.tags[name]
            with pytest.raises(VersionNotFoundError, match=name):
                self.ds.read_all(version=name)
            return
        shift = data.draw(st.integers(1, self.model.head_id), label="shift")
        target = (self.model.tags[name] + shift) % (self.model.head_id + 1)  # any version but the current one
        if action == "move":
            self.ds.tag(name, version=target, force=True)
            self.model.tags[name] = target
        else:
            with pytest.raises(TagExistsError, match=name):
                self.ds.tag(name, version=target)

    # ----- reads --------------------------------------------------------------------------------------

    @invariant()
    def head_matches_model(self) -> None:
        self.assert_version(self.ds.read_all(), self.model.head_id)
        assert self.ds.count() == len(self.model.head)

    @rule(data=st.data())
    def read_old_version(self, data: st.DataObject) -> None:
        version = data.draw(st.integers(0, self.model.head_id), label="version")
        self.assert_version(self.ds.read_all(version=version), version)
        assert self.ds.count(version=version) == len(self.model.versions[version])

    @rule(label=st.sampled_from(LABELS), lo=st.integers(-4, 4), span=st.integers(0, 3))
    def read_filtered(self, label: str, lo: int, span: int) -> None:
        cases = [
            (pc.field("label") == label, label_is(label)),
            ((pc.field("score") >= lo) & (pc.field("score") <= lo + span), score_between(lo, lo + span)),
            # Files holding nulls must not be pruned by their min/max for an is_null filter.
            (pc.field("score").is_null(), lambda r: r["score"] is None),
        ]
        for expr, predicate in cases:
            expected = [r for r in self.model.rows() if predicate(r)]
            assert self.layout.sorted_rows(self.ds.read_all(filter=expr).to_pylist()) == expected, str(expr)
            assert self.ds.count(filter=expr) == len(expected), str(expr)

    @rule(indexes=st.lists(KEY_INDEX, unique=True, max_size=6))
    def take(self, indexes: list[int]) -> None:
        # take() returns rows in the order the keys are given and skips absent keys.
        expected = [self.model.head[self.keys[i]] for i in indexes if self.keys[i] in self.model.head]
        assert self.ds.take(self.key_args(indexes)).to_pylist() == expected
        labels = self.ds.take(self.key_args(indexes), columns=["label"])
        assert labels.column_names == ["label"]
        assert labels.column("label").to_pylist() == [r["label"] for r in expected]

    def teardown(self) -> None:
        try:
            for version in range(self.model.head_id + 1):
                self.assert_version(self.ds.read_all(version=version), version)
            for name, version in self.model.tags.items():
                self.assert_version(self.ds.read_all(version=name), version)
            history = self.ds.versions()
            ids = history.column("snapshot_id").to_pylist()
            assert ids == list(range(self.model.head_id + 1))
            assert history.column("parent_id").to_pylist() == [None, *ids[:-1]]
            self.ds.validate()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.parametrize("arrow_cache", [False, True], ids=["parquet", "arrow_cache"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_dataset_matches_model(layout: Layout, arrow_cache: bool, tmp_path: Path) -> None:
    run_state_machine_as_test(
        lambda: DatasetMachine(layout, tmp_path, arrow_cache),
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,  # the same sequences on every run and machine: CI failures reproduce
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

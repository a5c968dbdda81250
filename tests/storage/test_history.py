"""history() of one key on local disk: every state newest first, with commit metadata, across deletes,
compactions and branches; and it reads only change logs and the data files that held the key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
from _disk import files_under
from _model import COMPOSITE_KEY, SINGLE_KEY, MakeDataset, Row

import storage.context
import storage.io.local
from storage import Catalog, CorruptDatasetError, Dataset, InvalidInputError, WriteOptions, changes
from storage.datafiles import read_positions
from storage.io.local import LocalStore
from storage.row_images import MAX_LOGGED_NEW_ROWS

LAYOUT = SINGLE_KEY
KEY = 7
EDITS = 50
COMMITS = 200  # after the first load; every fourth edits KEY


def row(key: int, label: str, score: int = 0) -> Row:
    return LAYOUT.row((key,), label, score)


def states(history: pa.Table) -> list[tuple[Any, ...]]:
    """(snapshot id, change type, message, properties, row) per history entry."""
    return [
        (
            r["_snapshot_id"],
            r["_change_type"],
            r["_message"],
            json.loads(r["_properties"]),
            LAYOUT.row((r["id"],), r["label"], r["score"]),
        )
        for r in history.to_pylist()
    ]


def _edit_often(ds: Dataset) -> list[tuple[Any, ...]]:
    """Load 10 keys, then COMMITS commits of which EDITS replace KEY's row (and its neighbour's); returns KEY's
    states, newest first. The other commits write keys far from KEY, so that their key lookups skip its files."""
    first = ds.append(LAYOUT.table([row(k, "v0") for k in range(10)]), message="load", properties={"source": "seed"})
    expected = [(first.id, "insert", "load", {"source": "seed"}, row(KEY, "v0"))]
    for c in range(1, COMMITS + 1):
        if c % 4 == 0:
            n = c // 4
            props = {"edit": str(n)}
            snap = ds.upsert(
                LAYOUT.table([row(KEY, f"v{n}", n), row(KEY + 1, f"c{c}")]), message=f"edit {n}", properties=props
            )
            expected.append((snap.id, "update", f"edit {n}", props, row(KEY, f"v{n}", n)))
        elif c % 4 == 1:
            ds.append(LAYOUT.table([row(1000 + c, "new")]))
        else:
            ds.upsert(LAYOUT.table([row(100 + c % 5, f"c{c}")]))
    return expected[::-1]


@pytest.fixture
def read_spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Record the paths of every object read through the local store and every data file read by position."""
    seen: dict[str, list[str]] = {"bytes": [], "positions": []}
    read_bytes = LocalStore.read_bytes

    def spy_bytes(self: LocalStore, path: str) -> bytes:
        seen["bytes"].append(path)
        return read_bytes(self, path)

    def spy_positions(
        store: Any, layout: Any, path: str, positions: np.ndarray[Any, Any], columns: list[str]
    ) -> pa.Table:
        seen["positions"].append(path)
        return read_positions(store, layout, path, positions, columns)

    monkeypatch.setattr(LocalStore, "read_bytes", spy_bytes)
    monkeypatch.setattr(storage.context, "read_positions", spy_positions)
    return seen


@pytest.mark.slow
def test_history_of_a_key_edited_50_times_in_200_commits(
    monkeypatch: pytest.MonkeyPatch,
    make_dataset: MakeDataset,
    catalog: Catalog,
    catalog_root: Path,
    log_row_images: bool,
    read_spy: dict[str, list[str]],
) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    # Durability is not under test here, and on a busy shared disk the 200 commits' ~1,700 fsyncs take most
    # of the test's time.
    with monkeypatch.context() as mp:
        mp.setattr(storage.io.local, "_fsync", lambda path: None)
        expected = _edit_often(ds)
    assert len(expected) == EDITS + 1
    # The data files that held KEY: the one each of its commits added (every write here adds one file).
    held = {
        (
            set(ds.manifest(version=sid).column("path").to_pylist())
            - set(ds.manifest(version=sid - 1).column("path").to_pylist())
        ).pop()
        for sid, *_ in expected
    }
    data_files = files_under(catalog_root / "ds", ("data",))
    assert len(held) == EDITS + 1 and len(data_files) > 3 * len(held)
    created = {
        sid: at
        for sid, at in zip(
            ds.versions().column("snapshot_id").to_pylist(), ds.versions().column("created_at").to_pylist(), strict=True
        )
    }

    fresh = Catalog(catalog.uri).dataset("ds")  # a fresh handle: no log entry cached
    read_spy["bytes"].clear()
    read_spy["positions"].clear()
    history = fresh.history(KEY)

    assert history.column_names == [
        "_snapshot_id",
        "_committed_at",
        "_change_type",
        "_message",
        "_properties",
        "id",
        "label",
        "score",
    ]
    assert states(history) == expected
    assert history.column("_committed_at").to_pylist() == [created[sid] for sid, *_ in expected]
    # Only change logs (and log entries) were read as objects, and rows only from the files that held KEY;
    # with row images, none: each state is the image its commit logged.
    assert {p.split("/", 1)[0] for p in read_spy["bytes"]} <= {"_log", "changes"}
    if log_row_images:
        assert read_spy["positions"] == []
    else:
        assert set(read_spy["positions"]) == held
        assert len(read_spy["positions"]) <= len(held) < len(data_files)

    assert ds.history(KEY, columns=["label"]).column_names[-1:] == ["label"]
    assert ds.history(99_999).num_rows == 0, "a key that never existed has no history"


def test_history_of_a_deleted_then_reinserted_key(make_dataset: MakeDataset, log_row_images: bool) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    ids = [ds.append(LAYOUT.table([row(k, "a") for k in range(3)])).id]
    ids.append(ds.upsert(LAYOUT.table([row(2, "b")])).id)
    ids.append(ds.delete(keys=[2]).id)
    ids.append(ds.insert(LAYOUT.table([row(2, "c")])).id)
    assert ds.compact(target_rows=100).operation == "compact"  # moves the row: not a change of it
    ids.append(ds.upsert(LAYOUT.table([row(2, "d")])).id)
    ds.delete(keys=[1])

    history = ds.history(2)
    assert history.column("_snapshot_id").to_pylist() == ids[::-1]
    assert history.column("_change_type").to_pylist() == ["update", "insert", "delete", "update", "insert"]
    # A delete shows the row as it was.
    assert history.column("label").to_pylist() == ["d", "c", "b", "b", "a"]


def test_history_follows_the_branch(make_dataset: MakeDataset, log_row_images: bool) -> None:
    ds = make_dataset(log_row_images=log_row_images)
    load = ds.append(LAYOUT.table([row(k, "a") for k in range(3)])).id
    dev = ds.create_branch("dev")
    edit = dev.upsert(LAYOUT.table([row(1, "dev")])).id
    main_edit = ds.upsert(LAYOUT.table([row(2, "main")])).id

    assert dev.history(1).column("_snapshot_id").to_pylist() == [edit, load], "the branch's past includes main's"
    assert ds.history(1).column("_snapshot_id").to_pylist() == [load], "dev's edit is not on main yet"
    merge = ds.merge("dev").id
    assert main_edit < merge
    history = ds.history(1)
    assert history.column("_snapshot_id").to_pylist() == [merge, load]
    assert history.column("label").to_pylist() == ["dev", "a"]


def test_history_and_diff_across_a_bulk_load(make_dataset: MakeDataset, log_row_images: bool) -> None:
    # A commit of more new rows than MAX_LOGGED_NEW_ROWS logs no new-row images, unlike the commits around it.
    ds = make_dataset(log_row_images=log_row_images)
    small = ds.append(LAYOUT.table([row(k, "a") for k in range(3)])).id
    bulk = MAX_LOGGED_NEW_ROWS + 1
    ds.append(pa.table({"id": np.arange(10, 10 + bulk), "label": ["bulk"] * bulk, "score": np.zeros(bulk, np.int64)}))
    ds.upsert(LAYOUT.table([row(1, "b"), row(10, "b")]))
    ds.delete(keys=[2, 11])

    diff = ds.diff(small)
    assert diff.num_rows == (bulk - 1) + 2 + 1  # inserts (11 deleted again), 1 updated, 2 deleted
    changed = diff.filter(pc.field("id") < 3).to_pylist()
    assert sorted((r["_change_type"], r["id"], r["label"]) for r in changed) == [
        ("delete", 2, "a"),
        ("update_postimage", 1, "b"),
        ("update_preimage", 1, "a"),
    ]
    assert ds.history(10).column("label").to_pylist() == ["b", "bulk"]


def _bulk(ds: Dataset) -> int:
    """Append a load too large to log its new rows (keys 0..n-1, label "bulk"); returns n."""
    n = MAX_LOGGED_NEW_ROWS + 1
    ds.append(pa.table({"id": np.arange(n), "label": ["bulk"] * n, "score": np.zeros(n, np.int64)}))
    return n


def test_history_takes_every_state_from_row_images(make_dataset: MakeDataset, read_spy: dict[str, list[str]]) -> None:
    ds = make_dataset(log_row_images=True)
    n = _bulk(ds)
    ds.upsert(LAYOUT.table([row(5, "b", 1), row(n + 1, "new", 2)]))  # an update and an insert in one log
    ds.delete(keys=[5])
    read_spy["positions"].clear()

    history = ds.history(5)
    assert history.column("_change_type").to_pylist() == ["delete", "update", "insert"]
    # The load logged no image of its rows: the update's image of the row it replaced is that row.
    assert history.column("label").to_pylist() == ["b", "b", "bulk"]
    assert history.column("score").to_pylist() == [1, 1, 0]
    assert ds.history(n + 1).select(["id", "label", "score"]).to_pylist() == [{"id": n + 1, "label": "new", "score": 2}]
    assert read_spy["positions"] == [], "no data file was read"


def test_history_reads_the_file_of_a_state_no_image_holds(
    make_dataset: MakeDataset, read_spy: dict[str, list[str]]
) -> None:
    ds = make_dataset(log_row_images=True)
    n = _bulk(ds)
    loaded = ds.manifest().column("path").to_pylist()
    ds.delete(keys=list(range(100, n)))
    assert ds.compact().operation == "compact"  # moves key 5: the update's image is of the moved row
    ds.upsert(LAYOUT.table([row(5, "b")]))
    read_spy["positions"].clear()

    assert ds.history(5).column("label").to_pylist() == ["b", "bulk"]
    assert read_spy["positions"] == loaded, "the load's row comes from the file it wrote"


def test_history_of_a_composite_key_on_s3_from_row_images(moto_s3: Any) -> None:
    layout = COMPOSITE_KEY
    cat = Catalog(f"s3://{moto_s3.new_bucket()}/cat", **moto_s3.options)
    ds = cat.create_dataset("ds", layout.schema, list(layout.primary_keys), options=WriteOptions(log_row_images=True))
    first = ds.append(layout.table([layout.row((s, i), "a", i) for s in ("x", "y") for i in range(3)])).id
    edit = ds.upsert(layout.table([layout.row(("y", 1), "b", 7), layout.row(("x", 9), "new", 0)])).id
    gone = ds.delete(keys=[("y", 1)]).id
    ds.upsert(layout.table([layout.row(("x", 1), "other", 0)]))  # the same id in another shard

    history = Catalog(cat.uri, **moto_s3.options).dataset("ds").history(("y", 1))
    assert history.column("_snapshot_id").to_pylist() == [gone, edit, first]
    assert history.select(["shard", "id", "label", "score"]).to_pylist() == [
        layout.row(("y", 1), "b", 7),
        layout.row(("y", 1), "b", 7),
        layout.row(("y", 1), "a", 1),
    ]


def test_row_at_reads_any_row_of_a_log_of_several_batches(make_dataset: MakeDataset) -> None:
    ds = make_dataset(log_row_images=True)
    ds.append(LAYOUT.table([row(k, "a", k) for k in range(6)]))
    ds.upsert(LAYOUT.table([row(k, "b", k) for k in (1, 4, 8, 9)]))  # updates and inserts
    ctx = ds._ctx
    path = str(ctx.log.get(ds.snapshot().id).changes)
    keys, full = changes.read_keys(ctx.store, path, 1), changes.load(ctx.store, path)
    assert keys.column_names == ["id"]
    assert keys.column(0).num_chunks > 1, "the log this test needs: one batch per kind of change"
    for i in range(full.num_rows):
        one = changes.row_at(ctx.store, path, 1, i)
        assert one.to_pylist() == full.slice(i, 1).to_pylist()
        for name in changes.IMAGES:
            image = changes.image_of(one, name)
            want = full.column(name)[i]
            assert (None if image is None else image.to_pylist()) == ([want.as_py()] if want.is_valid else None)


@pytest.mark.parametrize("cut", ["footer", "half"])
def test_a_truncated_change_log_is_reported_not_read_short(make_dataset: MakeDataset, cut: str) -> None:
    """Change logs are read as the stream their Arrow file holds; a log cut short, even one whose stream is
    whole but whose footer is gone, is an error naming it, never a diff missing rows."""
    ds = make_dataset(log_row_images=True)
    start = ds.append(LAYOUT.table([row(k, "a") for k in range(20)])).id
    end = ds.upsert(LAYOUT.table([row(k, "b") for k in range(10)])).id
    path = str(ds._ctx.log.get(end).changes)
    local = Path(str(ds._ctx.store.local_path(path)))
    data = local.read_bytes()
    local.write_bytes(data[: len(data) - 10 if cut == "footer" else len(data) // 2])
    with pytest.raises(CorruptDatasetError, match=path):
        ds.diff(start, end)


def test_a_change_log_damaged_after_a_diff_mapped_it_is_read_afresh(make_dataset: MakeDataset) -> None:
    """diff() keeps the logs it mapped; a log cut short in place afterwards is read again and reported, not
    served from the old mapping (whose pages past the new end would kill the process when read)."""
    ds = make_dataset(log_row_images=True)
    start = ds.append(LAYOUT.table([row(k, "a") for k in range(20)])).id
    end = ds.upsert(LAYOUT.table([row(k, "b") for k in range(10)])).id
    before = ds.diff(start, end)
    assert ds.diff(start, end).equals(before)
    path = str(ds._ctx.log.get(end).changes)
    local = Path(str(ds._ctx.store.local_path(path)))
    local.write_bytes(local.read_bytes()[:-10])
    with pytest.raises(CorruptDatasetError, match=path):
        ds.diff(start, end)


def test_diff_over_logs_that_hold_file_paths_as_strings(make_dataset: MakeDataset) -> None:
    """Logs store file paths dictionary-encoded; logs an older version wrote hold them as strings, and a
    diff over both kinds, either way round, gives the same rows."""
    ds = make_dataset(log_row_images=True)
    start = ds.append(LAYOUT.table([row(k, "a") for k in range(30)])).id
    for step in range(4):
        ds.upsert(LAYOUT.table([row(k, f"s{step}") for k in range(step, 30, 3)] + [row(100 + step, "new")]))
    ds.delete(keys=[5])
    end = ds.snapshot().id
    ctx = ds._ctx
    stored = ipc.open_file(str(ctx.store.local_path(str(ctx.log.get(end).changes)))).schema
    assert all(pa.types.is_dictionary(stored.field(c).type) for c in changes.FILE_COLUMNS)
    want = {(s, e): sorted(map(str, ds.diff(s, e).to_pylist())) for s, e in ((start, end), (end, start))}
    for sid in (start + 1, start + 3):  # rewrite two of the logs as an older version wrote them
        local = str(ctx.store.local_path(str(ctx.log.get(sid).changes)))
        old = changes.load(ctx.store, str(ctx.log.get(sid).changes))
        with ipc.new_file(local + ".old", old.schema) as writer:
            writer.write_table(old)
        os.replace(local + ".old", local)  # a new file, as every write is: `old` still maps the one it replaces
        assert pa.types.is_string(ipc.open_file(local).schema.field("_old_file").type)
    for (s, e), rows in want.items():
        assert sorted(map(str, ds.diff(s, e).to_pylist())) == rows


def test_iter_diff_refuses_an_empty_batch(make_dataset: MakeDataset) -> None:
    ds = make_dataset()
    start = ds.append(LAYOUT.table([row(1, "a")])).id
    with pytest.raises(InvalidInputError, match="batch_size must be at least 1"):
        ds.iter_diff(start, batch_size=0)

"""Roll-ups of change logs: a commit at a multiple of 10, 100 or 1,000 stores the net change of the commits
before it, and diff() composes those instead of one log per commit.

Diffs are checked against two reads of the versions (not against the engine's own change logs); the
model-based version test also runs with roll-ups at every other commit, nested three levels deep.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _disk import unreferenced_files
from _model import LAYOUTS
from test_versions_model import _run

from storage import Catalog, CorruptDatasetError, Dataset, WriteOptions, faults, rollups
from storage.lineage import ROLLUPS, first_parent_path, logs_along

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("label", pa.string())])


@pytest.fixture
def dense(monkeypatch: pytest.MonkeyPatch) -> None:
    """Roll-ups at every other commit, nested (2, 4, 8): every diff and merge composes some."""
    monkeypatch.setattr(rollups, "LEVELS", (2, 4, 8))


def _dataset(catalog: Catalog, row_images: bool) -> Dataset:
    return catalog.create_dataset("ds", SCHEMA, ["id"], options=WriteOptions(log_row_images=row_images))


def edit(ds: Dataset, step: int) -> None:
    """Commit `step`: relabel a few keys (some again and again), insert one, delete one, now and then compact."""
    if step % 7 == 6:
        ds.compact()
    elif step % 5 == 4:
        ds.delete(keys=[step % 13, 100 + step - 3])
    else:
        keys = sorted({step % 13, (3 * step) % 17, 100 + step})
        ds.upsert(pa.table({"id": keys, "label": [f"v{step}"] * len(keys)}, schema=SCHEMA))


def _rows(ds: Dataset, version: int) -> dict[int, str | None]:
    table = ds.read_all(version=version)
    return dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True))


def expected_diff(ds: Dataset, start: int, end: int) -> set[tuple[Any, ...]]:
    a, b = _rows(ds, start), _rows(ds, end)
    out: set[tuple[Any, ...]] = set()
    out |= {(k, b[k], "insert") for k in b.keys() - a.keys()}
    out |= {(k, a[k], "delete") for k in a.keys() - b.keys()}
    for k in a.keys() & b.keys():
        if a[k] != b[k]:
            out |= {(k, a[k], "update_preimage"), (k, b[k], "update_postimage")}
    return out


def diff_rows(ds: Dataset, start: int, end: int) -> set[tuple[Any, ...]]:
    table = ds.diff(start, end)
    rows = zip(*(table.column(c).to_pylist() for c in ("id", "label", "_change_type")), strict=True)
    got = list(rows)
    assert len(got) == len(set(got)), f"diff({start}, {end}) repeats a row"
    return set(got)


@pytest.mark.parametrize("row_images", [False, True], ids=["files", "row_images"])
def test_diff_over_rollups_matches_the_versions(catalog: Catalog, row_images: bool) -> None:
    ds = _dataset(catalog, row_images)
    for step in range(125):
        edit(ds, step)
    ctx = ds._ctx
    head = ctx.log.get(ds.snapshot().id)
    stored = {e.snapshot_id: set(e.summary.get(ROLLUPS, {})) for e in ctx.log.chain(head)}
    assert stored[100] == {"10", "100"} and stored[110] == {"10"} and stored[105] == set()
    path = first_parent_path(ctx, ctx.log.get(3), head)
    assert path is not None and len(path) == head.snapshot_id - 3
    # 4..10 one by one ((0, 10] starts before 3), tens up to 120, then the rest one by one.
    assert len(logs_along(path)) == 7 + 11 + (head.snapshot_id - 120)
    for start, end in [(0, head.snapshot_id), (3, 101), (9, 100), (10, 20), (11, 99), (57, 123), (120, 8)]:
        assert diff_rows(ds, start, end) == expected_diff(ds, start, end), (start, end)


@pytest.mark.parametrize("row_images", [False, True], ids=["files", "row_images"])
def test_versions_model_with_dense_rollups(dense: None, row_images: bool, tmp_path: Path) -> None:
    _run(LAYOUTS[0], row_images, tmp_path, max_examples=15, steps=25)


def test_unreadable_rollup_falls_back_to_the_commit_logs(catalog: Catalog, catalog_root: Path) -> None:
    ds = _dataset(catalog, row_images=True)
    for step in range(30):
        edit(ds, step)
    broken = rollups.paths(ds._ctx.log.get(20))
    assert broken
    (catalog_root / "ds" / broken[0]).unlink()
    assert diff_rows(ds, 1, 30) == expected_diff(ds, 1, 30)
    with pytest.raises(CorruptDatasetError, match=broken[0]):
        ds.validate()


def test_vacuum_keeps_rollups_of_live_snapshots_only(catalog: Catalog, catalog_root: Path) -> None:
    ds = _dataset(catalog, row_images=True)
    for step in range(31):
        edit(ds, step)
    ctx = ds._ctx
    gone = rollups.paths(ctx.log.get(10)) + rollups.paths(ctx.log.get(20))
    kept = rollups.paths(ctx.log.get(30))
    assert gone and kept
    ds.expire(keep_last=5)
    removed = set(ds.vacuum(grace_period=timedelta(0)).removed)
    assert set(gone) <= removed and not set(kept) & removed
    assert all((catalog_root / "ds" / p).exists() for p in kept)
    assert diff_rows(ds, 27, ds.snapshot().id) == expected_diff(ds, 27, ds.snapshot().id)
    ds.validate()


def test_no_rollup_beyond_max_rows(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollups, "MAX_ROWS", 20)
    ds = _dataset(catalog, row_images=False)
    ds.append(pa.table({"id": list(range(1000, 1030)), "label": ["bulk"] * 30}, schema=SCHEMA))
    for step in range(25):
        ds.upsert(pa.table({"id": [step % 4], "label": [f"v{step}"]}, schema=SCHEMA))
    with_rollups = {e.snapshot_id for e in ds._ctx.log.entries() if e.summary.get(ROLLUPS)}
    assert with_rollups == {20}, "the window of 10 holds the 30-row load; that of 20 holds 10 small commits"


def test_commit_that_lost_a_race_leaves_no_rollup(dense: None, catalog: Catalog, catalog_root: Path) -> None:
    ds = _dataset(catalog, row_images=True)
    for step in range(5):
        edit(ds, step)
    assert ds.snapshot().id == 5
    raced: list[int] = []
    rival = catalog.dataset("ds")

    def hook(step: str) -> None:
        if step == "commit.before_log" and not raced:
            raced.append(1)
            rival.upsert(pa.table({"id": [999], "label": ["rival"]}, schema=SCHEMA))  # takes id 6

    faults.set_hook(hook)
    try:
        ds.upsert(pa.table({"id": [1], "label": ["mine"]}, schema=SCHEMA))  # lost 6 (a roll-up's id), lands as 7
    finally:
        faults.set_hook(None)
    assert raced and ds.snapshot().id == 7
    assert set(ds._ctx.log.get(6).summary[ROLLUPS]) == {"2"}
    assert unreferenced_files(catalog_root / "ds") == set(), "the losing attempt's roll-up was left behind"
    assert diff_rows(ds, 1, 7) == expected_diff(ds, 1, 7)


@pytest.mark.parametrize("spare", [0, -1], ids=["fits", "one_byte_over"])
def test_no_rollup_beyond_max_bytes(
    catalog: Catalog, catalog_root: Path, monkeypatch: pytest.MonkeyPatch, spare: int
) -> None:
    ds = _dataset(catalog, row_images=True)
    for step in range(9):
        ds.upsert(pa.table({"id": [step], "label": ["x" * 1000]}, schema=SCHEMA))
    window = [e.changes for e in ds._ctx.log.entries() if e.changes and e.snapshot_id > 0]
    assert len(window) == 9
    monkeypatch.setattr(rollups, "MAX_BYTES", sum((catalog_root / "ds" / p).stat().st_size for p in window) + spare)
    assert ds.upsert(pa.table({"id": [99], "label": ["y"]}, schema=SCHEMA)).id == 10
    assert (ROLLUPS in ds.snapshot().summary) == (spare == 0)

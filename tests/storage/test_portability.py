"""A dataset or a whole catalog copied or moved elsewhere opens and reads identically at every version."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from _model import SINGLE_KEY, Layout, MakeDataset, Row

from storage import Catalog, Dataset

LAYOUT = SINGLE_KEY
Versions = dict[Any, list[Row]]  # snapshot id or tag -> rows


def build_history(ds: Dataset) -> None:
    """Appends, an upsert (deletion vectors), a delete, a restore and tags: every kind of file there is."""
    ds.append(LAYOUT.table([LAYOUT.row((i,), "a", i) for i in range(12)]))
    ds.tag("first")
    ds.upsert(LAYOUT.table([LAYOUT.row((i,), "b", -i) for i in (1, 5, 20)]))
    ds.delete(pc.field("score") > 8)
    ds.restore("first")
    ds.upsert(LAYOUT.table([LAYOUT.row((30,), None, None)]))
    ds.tag("last")


def every_version(ds: Dataset, layout: Layout = LAYOUT) -> Versions:
    """The rows of every snapshot and every tag."""
    names: list[Any] = [*ds.versions().column("snapshot_id").to_pylist(), *ds.tags()]
    return {v: layout.sorted_rows(ds.read_all(version=v).to_pylist()) for v in names}


def history_of(ds: Dataset) -> list[dict[str, Any]]:
    return ds.versions().to_pylist()


def assert_same_dataset(copy: Dataset, original_versions: Versions, original_history: list[dict[str, Any]]) -> None:
    copy.validate()
    assert history_of(copy) == original_history
    assert every_version(copy) == original_versions


def assert_no_path_in_files(root: Path, *paths: Path) -> None:
    """No file (metadata or data) mentions an absolute location: the format holds relative paths only."""
    needles = [str(p).encode() for p in paths]
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(n in data for n in needles), f"{f} contains an absolute path"


def test_no_absolute_paths_in_any_file(make_dataset: MakeDataset, catalog_root: Path, tmp_path: Path) -> None:
    build_history(make_dataset(LAYOUT, "frames", max_rows_per_file=4))
    assert_no_path_in_files(catalog_root, tmp_path)


def test_dataset_directory_copied_into_another_catalog(
    make_dataset: MakeDataset, catalog_root: Path, tmp_path: Path
) -> None:
    ds = make_dataset(LAYOUT, "frames", max_rows_per_file=4)
    build_history(ds)
    versions, history = every_version(ds), history_of(ds)

    other = Catalog(tmp_path / "elsewhere" / "lake")
    shutil.copytree(catalog_root / "frames", Path(other.uri) / "frames")
    copy = other.dataset("frames")
    assert_same_dataset(copy, versions, history)

    # The copy is independent: writing to it leaves the original as it was.
    copy.upsert(LAYOUT.table([LAYOUT.row((1,), "copy", 0)]))
    assert every_version(Catalog(catalog_root).dataset("frames")) == versions


def test_dataset_copied_under_a_new_name_in_the_same_catalog(make_dataset: MakeDataset, catalog_root: Path) -> None:
    ds = make_dataset(LAYOUT, "frames", max_rows_per_file=4)
    build_history(ds)
    shutil.copytree(catalog_root / "frames", catalog_root / "frames-copy")
    catalog = Catalog(catalog_root)
    assert catalog.datasets() == ["frames", "frames-copy"]
    assert_same_dataset(catalog.dataset("frames-copy"), every_version(ds), history_of(ds))


def test_whole_catalog_moved(make_dataset: MakeDataset, catalog_root: Path, tmp_path: Path) -> None:
    build_history(make_dataset(LAYOUT, "frames", max_rows_per_file=4))
    build_history(make_dataset(LAYOUT, "crops"))
    before = {name: Catalog(catalog_root).dataset(name) for name in ("frames", "crops")}
    expected = {name: (every_version(ds), history_of(ds)) for name, ds in before.items()}

    moved = tmp_path / "moved" / "lake"
    shutil.move(catalog_root, moved)
    assert not catalog_root.exists()
    catalog = Catalog(moved)
    assert catalog.datasets() == ["crops", "frames"]
    for name, (versions, history) in expected.items():
        assert_same_dataset(catalog.dataset(name), versions, history)
    # Still writable where it now lives, and still free of absolute paths.
    catalog.dataset("frames").append(LAYOUT.table([LAYOUT.row((99,), "moved", 0)]))
    catalog.dataset("frames").validate()
    assert_no_path_in_files(moved, tmp_path)

"""Shared fixtures of the storage tests: a catalog on tmp_path, a dataset factory, a spawn context."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from multiprocessing.context import SpawnContext
from pathlib import Path

import pytest
from _model import SINGLE_KEY, Layout, MakeDataset

from storage import Catalog, Dataset, WriteOptions


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    """An empty catalog in its own directory under tmp_path (so tests can copy or corrupt it freely)."""
    return Catalog(tmp_path / "lake")


@pytest.fixture
def catalog_root(catalog: Catalog) -> Path:
    """The catalog's directory."""
    return Path(catalog.uri)


@pytest.fixture
def make_dataset(catalog: Catalog) -> MakeDataset:
    """Create a dataset of a test layout; small `max_rows_per_file` makes writes span several files."""

    def make(
        layout: Layout = SINGLE_KEY,
        name: str = "ds",
        max_rows_per_file: int | None = None,
        log_row_images: bool = False,
    ) -> Dataset:
        options = WriteOptions(log_row_images=log_row_images)
        if max_rows_per_file:
            options = replace(options, max_rows_per_file=max_rows_per_file)
        return catalog.create_dataset(name, layout.schema, primary_keys=list(layout.primary_keys), options=options)

    return make


@pytest.fixture(params=[False, True], ids=["files", "row_images"])
def log_row_images(request: pytest.FixtureRequest) -> bool:
    """Run a test on datasets without and with `WriteOptions.log_row_images` (diff reads rows from change logs)."""
    return bool(request.param)


@pytest.fixture(scope="session")
def spawn() -> SpawnContext:
    """Real, fresh processes: nothing (caches, open handles) is shared with the test process."""
    return multiprocessing.get_context("spawn")

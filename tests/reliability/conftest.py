"""Fixtures of the reliability suite: one built world per backend (local disk, moto's S3 server)."""

from __future__ import annotations

from typing import Any

import pytest
from fault_matrix import World, build_world, local_backend, s3_backend


def pytest_configure(config: pytest.Config) -> None:
    # Registered here so --strict-markers accepts it before pyproject.toml lists it too (harmless twice).
    config.addinivalue_line("markers", "reliability: the full fault matrix and load runs (tests/reliability/run.py)")


@pytest.fixture(scope="session")
def local_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The world on local disk; trials clone it, so it is built once per session."""
    return build_world(local_backend(tmp_path_factory.mktemp("reliability-local")))


@pytest.fixture(scope="session")
def local_row_images_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The world on local disk, its dataset logging row images (no view or index: dataset operations only)."""
    return build_world(local_backend(tmp_path_factory.mktemp("reliability-images")), views=False, row_images=True)


@pytest.fixture(scope="session")
def s3_world(moto_s3: Any) -> World:
    """The world on moto's S3 server (the session's `moto_s3` fixture from tests/conftest.py)."""
    return build_world(s3_backend(moto_s3.new_bucket(), moto_s3.options, moto_s3.client()))


@pytest.fixture(scope="session")
def s3_dataset_world(moto_s3: Any) -> World:
    """The world on S3 without the view and the index (quicker to build, enough for dataset operations)."""
    return build_world(s3_backend(moto_s3.new_bucket(), moto_s3.options, moto_s3.client()), views=False)


@pytest.fixture(scope="session")
def s3_row_images_world(moto_s3: Any) -> World:
    """The S3 dataset world, its dataset logging row images."""
    backend = s3_backend(moto_s3.new_bucket(), moto_s3.options, moto_s3.client())
    return build_world(backend, views=False, row_images=True)

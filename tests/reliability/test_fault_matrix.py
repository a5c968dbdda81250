"""Each fault at each store call of every write operation, on local disk and on moto's S3 server.

The fast subset (run by `make test`) injects every fault at each operation's commit on local disk, and
the ambiguous outcomes of an append's commit on S3. The full matrix (`-m reliability`, run.py) injects
every fault at every call on local disk, and the store-dependent faults on S3 (see backend_points).
The operations that write change logs run again on a dataset that logs row images (on S3: the commit's faults).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fault_matrix import (
    OPERATIONS,
    FaultPoint,
    World,
    ambiguous_commit_points,
    backend_points,
    commit_points,
    iter_trials,
)
from report import record

from storage import rollups


def run_matrix(world: World, operation: str, select: Callable[[list[FaultPoint]], list[FaultPoint]]) -> None:
    """Run the selected trials, record them for the report, and fail with the first few broken ones."""
    results = list(iter_trials(world, OPERATIONS[operation], select))
    for result in results:
        record("trial", result)
    assert results, f"{operation}: no fault points were selected"
    failed = [r for r in results if not r.passed]
    assert not failed, f"{len(failed)} of {len(results)} trials broke a guarantee:\n\n" + "\n\n".join(
        f"{r.point} -> {r.outcome}\n" + "\n".join(r.problems) for r in failed[:3]
    )


# The operations that write `ds` change logs (what WriteOptions.log_row_images adds row images to).
ROW_IMAGE_OPERATIONS = sorted(name for name, op in OPERATIONS.items() if op.operation is not None)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_faults_at_the_commit_local(local_world: World, operation: str) -> None:
    run_matrix(local_world, operation, commit_points)


@pytest.mark.integration
def test_faults_at_the_commit_s3(s3_dataset_world: World) -> None:
    run_matrix(s3_dataset_world, "append", ambiguous_commit_points)


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_fault_matrix_local(local_world: World, operation: str) -> None:
    run_matrix(local_world, operation, list)


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_fault_matrix_s3(s3_world: World, operation: str) -> None:
    run_matrix(s3_world, operation, backend_points)


@pytest.mark.parametrize("operation", ["merge", "upsert"])
def test_faults_at_the_commit_local_row_images(local_row_images_world: World, operation: str) -> None:
    run_matrix(local_row_images_world, operation, commit_points)


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.parametrize("operation", ROW_IMAGE_OPERATIONS)
def test_fault_matrix_local_row_images(local_row_images_world: World, operation: str) -> None:
    run_matrix(local_row_images_world, operation, list)


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("operation", ROW_IMAGE_OPERATIONS)
def test_fault_matrix_s3_row_images(s3_row_images_world: World, operation: str) -> None:
    # Every fault at the commit: what row images add on S3 is the read of replaced rows before it.
    run_matrix(s3_row_images_world, operation, commit_points)


@pytest.mark.parametrize("operation", ["upsert", "merge"])
def test_fault_matrix_local_rollups(
    local_row_images_world: World, operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fault at every call of a commit that also stores a roll-up (its id is made a roll-up level):
    reading the logs it sums up and writing it beside the manifest."""
    monkeypatch.setattr(rollups, "LEVELS", (max(local_row_images_world.versions) + 1,))
    run_matrix(local_row_images_world, operation, list)

"""Crash safety: a writer SIGKILLed at each step of a commit leaves a valid dataset and only garbage files.

The kill happens in a spawned child through the engine's fault hook, so no `finally`, `except` or
atexit code of the writer can tidy up: what is on disk is what a power cut or OOM kill would leave.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import pytest
from _disk import unreferenced_files
from _model import SINGLE_KEY, MakeDataset, Model
from _procs import crash_writer

from storage import Catalog, Dataset

STEPS = ("write.after_data_file", "commit.after_manifest", "commit.before_log", "commit.after_log")
ROWS_PER_FILE = 4
LAYOUT = SINGLE_KEY

# Each operation and its payload; the initial rows live in three files, so the upsert and the delete both
# write deletion vectors, and the six appended rows need two data files.
INITIAL = [LAYOUT.row((i,), "old", i) for i in range(10)]
OPERATIONS: dict[str, Any] = {
    "append": [LAYOUT.row((100 + i,), "new", i) for i in range(6)],
    "upsert": [LAYOUT.row((2,), "upd", 20), LAYOUT.row((7,), "upd", 70), LAYOUT.row((50,), "ins", 50)],
    "delete": [1, 5, 9],
}
# A delete writes no data file, so it never reaches that step.
CASES = [(op, step) for op in OPERATIONS for step in STEPS if (op, step) != ("delete", "write.after_data_file")]


def apply_to_model(model: Model, operation: str, payload: Any) -> None:
    if operation == "delete":
        model.delete_keys((k,) for k in payload)
    else:
        model.upsert(payload)


def seeded(make_dataset: MakeDataset) -> tuple[Dataset, Model]:
    """A dataset with some history (an append and an upsert) and its model."""
    ds = make_dataset(LAYOUT, "crashy", max_rows_per_file=ROWS_PER_FILE)
    model = Model(LAYOUT)
    for operation, rows in (("append", INITIAL), ("upsert", [LAYOUT.row((0,), "early", 0)])):
        getattr(ds, operation)(LAYOUT.table(rows))
        apply_to_model(model, operation, rows)
    return ds, model


@pytest.mark.parametrize(("operation", "step"), CASES, ids=[f"{op}-{step}" for op, step in CASES])
def test_killed_writer_leaves_old_or_new_snapshot(
    operation: str,
    step: str,
    make_dataset: MakeDataset,
    catalog_root: Path,
    spawn: SpawnContext,
) -> None:
    _ds, model = seeded(make_dataset)
    old = model.head_id
    payload = OPERATIONS[operation]
    child = spawn.Process(target=crash_writer, args=(str(catalog_root), "crashy", LAYOUT, step, operation, payload))
    child.start()
    child.join(60)
    if child.is_alive():  # hung: do not leave it running after the test fails
        child.kill()
        child.join()
    assert child.exitcode == -signal.SIGKILL, f"the writer was not killed at {step} (exit code {child.exitcode})"

    # Open afresh, as a process starting after the crash would.
    ds = Catalog(catalog_root).dataset("crashy")
    ds.validate()
    # Before the log entry exists the commit did not happen; once it exists, it did. Nothing in between.
    if step == "commit.after_log":
        apply_to_model(model, operation, payload)
    assert ds.snapshot().id == model.head_id
    assert LAYOUT.sorted_rows(ds.read_all().to_pylist()) == model.rows()
    assert LAYOUT.sorted_rows(ds.read_all(version=old).to_pylist()) == model.rows(old)

    leftovers = unreferenced_files(catalog_root / "crashy")
    if step != "commit.after_log":
        assert leftovers, "a commit killed mid-way should have left the files it prepared"
    # The default grace period protects files of writers that may still be running.
    assert ds.vacuum().removed == []
    assert set(ds.vacuum(grace_period=timedelta(0), dry_run=True).removed) == leftovers
    assert unreferenced_files(catalog_root / "crashy") == leftovers, "dry_run deleted files"
    assert set(ds.vacuum(grace_period=timedelta(0)).removed) == leftovers
    assert unreferenced_files(catalog_root / "crashy") == set()

    ds.validate()
    for version in range(model.head_id + 1):
        assert LAYOUT.sorted_rows(ds.read_all(version=version).to_pylist()) == model.rows(version)
    # And the dataset takes writes again: the crashed commit blocks nothing.
    retry = ds.upsert(LAYOUT.table([LAYOUT.row((3,), "after", 3)]))
    assert retry.id == model.upsert([LAYOUT.row((3,), "after", 3)])
    assert LAYOUT.sorted_rows(ds.read_all().to_pylist()) == model.rows()
    ds.validate()

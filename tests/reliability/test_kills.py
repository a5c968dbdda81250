"""SIGKILL of a long ingest at random points, then the run again: every row exactly once, nothing left over.

A Labelbox NDJSON export of `LINES` data rows ingests in `LINES / CHUNK` batches, each its own commits,
against a real Prefect server on 127.0.0.1. Each trial kills the ingest's process group once `k` batches
have committed (plus a random fraction of a batch), then runs it again in one of two ways:

- `rerun`: `labelhouse ingest labelbox` again, a new flow run: the batches' content keys must make the
  batches committed before the kill no-ops;
- `retry`: the same flow run, put back to AwaitingRetry (the UI's Retry) and run again by its id.

Then the maintenance flow runs (vacuum grace 0) and the audit checks: every source row exactly once, one
commit per batch, every dataset valid, no unreferenced file and no staged batch left.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from exactly_once import audit, keyed_commits
from prefect_kit import LABELHOUSE, REPO, Prefect, Process, prefect_server, start_process, wait_until
from report import ProcessFault, record

from storage import Catalog
from storage.groundtruth import dataset_names
from tasks.flow_tasks.staging import STAGING_ENV, discard_stale_runs, staging_dir
from tasks.labelbox.stream import iter_export

LINES = 48
CHUNK = 8  # 6 batches
PROJECT = "k"
TRIALS = [("rerun", 0), ("retry", 2), ("rerun", 3), ("retry", 4)]  # (how, batches committed before the kill)
SEED = 10
RUN_TIMEOUT = 900.0
TEMPLATE = REPO / "tests" / "fixtures" / "labelbox" / "export_v2.ndjson"
RUN_FLOW_RUN = Path(__file__).resolve().parent / "run_flow_run.py"


def write_export(path: Path, lines: int) -> None:
    """`lines` distinct data rows, each the fixture's first row with its own ids (one item, 11 annotations)."""
    row = TEMPLATE.read_text(encoding="utf-8").splitlines()[0]
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(
                row.replace("cldr0001", f"cldr{i:06d}")
                .replace("000001.jpg", f"{i:06d}.jpg")
                .replace("cllabel0001", f"cllabel{i:06d}")
                + "\n"
            )


@dataclass(frozen=True)
class Source:
    path: Path
    ids: dict[str, list[str]]  # dataset -> the ids the export holds
    batches: int


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("labelbox") / "export.ndjson"
    write_export(path, LINES)
    names = dataset_names(PROJECT)
    ids: dict[str, list[str]] = {names["items"]: [], names["annotations"]: []}
    with path.open("rb") as lines:
        chunks = list(iter_export(lines, chunk_lines=CHUNK))
    for chunk in chunks:
        assert not chunk.rejects
        ids[names["items"]] += chunk.changes.items["id"].to_pylist()
        ids[names["annotations"]] += chunk.changes.annotations["id"].to_pylist()
    return Source(path, ids, len(chunks))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    with prefect_server(tmp_path_factory.mktemp("kills")) as running:
        yield running


def committed_batches(catalog: str) -> int:
    return len(keyed_commits(Catalog(catalog), dataset_names(PROJECT)["items"]))


def first_run(server: Prefect, how: str, source: Source, catalog: str, log: Path) -> tuple[Process, str | None]:
    """Start the ingest: the CLI (`rerun`), or a flow run created here and run by id (`retry`)."""
    if how == "rerun":
        return start_process(ingest_command(source, catalog), server.env, log), None
    from flows.files import ingest_labelbox

    parameters = {"path": str(source.path), "catalog": catalog, "project": PROJECT, "chunk_lines": CHUNK}
    with server.client() as client:
        run = client.create_flow_run(ingest_labelbox, parameters=parameters)
    return start_process([sys.executable, str(RUN_FLOW_RUN), str(run.id)], server.env, log), str(run.id)


def ingest_command(source: Source, catalog: str) -> list[str]:
    command = [LABELHOUSE, "ingest", "labelbox", str(source.path), "--catalog", catalog, "--project", PROJECT]
    return [*command, "--chunk-lines", str(CHUNK), "--json"]


def run_again(server: Prefect, how: str, source: Source, catalog: str, run_id: str | None, log: Path) -> Process:
    if how == "rerun":
        return start_process(ingest_command(source, catalog), server.env, log)
    from prefect.states import AwaitingRetry

    assert run_id is not None
    with server.client() as client:
        client.set_flow_run_state(run_id, AwaitingRetry(), force=True)  # what the UI's Retry does
    return start_process([sys.executable, str(RUN_FLOW_RUN), run_id], server.env, log)


def maintain(server: Prefect, catalog: str) -> None:
    """The maintenance flow with no vacuum grace, as `labelhouse serve` runs it nightly (in a subprocess
    with the ingest's environment, so it sees the same staging directory)."""
    code = f"from flows.maintenance import maintain_catalog; maintain_catalog({catalog!r}, vacuum_grace_hours=0)"
    done = start_process([sys.executable, "-c", code], server.env, Path(catalog).parent / "maintain.log")
    assert done.popen.wait(timeout=RUN_TIMEOUT) == 0, done.tail()


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(int(RUN_TIMEOUT * 3))  # three runs that may each take RUN_TIMEOUT on a busy host
@pytest.mark.parametrize(("how", "kill_after"), TRIALS, ids=[f"{how}-after-{k}" for how, k in TRIALS])
def test_a_killed_ingest_run_again_lands_every_row_once(
    server: Prefect, source: Source, tmp_path: Path, how: str, kill_after: int
) -> None:
    rng = random.Random(f"{SEED}:{how}:{kill_after}")
    catalog = str(tmp_path / "lake")
    first, run_id = first_run(server, how, source, catalog, tmp_path / "first.log")
    try:
        # Once `kill_after` batches have committed (for 0: once staging has begun), somewhere in the next one.
        staging = Path(server.env["LABELHOUSE_STAGING_DIR"]) / "labelhouse-staging"

        def there() -> bool:
            if kill_after == 0:
                return staging.is_dir() and any(staging.iterdir())
            return committed_batches(catalog) >= kill_after

        wait_until(there, RUN_TIMEOUT, "the ingest to get there", first)
        time.sleep(rng.uniform(0.0, 4.0))
        assert first.popen.poll() is None, f"the ingest finished before the kill:\n{first.tail()}"
    finally:
        first.kill()
    killed_at = committed_batches(catalog)
    second = run_again(server, how, source, catalog, run_id, tmp_path / "second.log")
    try:
        assert second.popen.wait(timeout=RUN_TIMEOUT) == 0, second.tail()
    finally:
        second.stop()
    maintain(server, catalog)
    commits = {name: source.batches for name in source.ids}
    result = audit(catalog, source.ids, commits, Path(server.env["LABELHOUSE_STAGING_DIR"]))
    record(
        "process",
        ProcessFault(
            scenario=f"SIGKILL ingest, then {'a new run' if how == 'rerun' else 'a retry of the same flow run'}",
            trials=1,
            changes=source.batches,
            rows=result.rows,
            rows_lost=result.rows_lost,
            rows_duplicated=result.rows_duplicated,
            applied_twice=result.applied_twice,
            problems=len(result.problems),
            detail=f"Labelbox NDJSON, {LINES} rows in {source.batches} batches; killed after 0-4 batches",
        ),
    )
    assert result.ok, (killed_at, result)


def test_maintenance_removes_the_staged_batches_killed_runs_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a killed run's staged batches stayed in the staging directory for ever."""
    monkeypatch.setenv(STAGING_ENV, str(tmp_path))
    killed, running = staging_dir("killed-run", 0), staging_dir("running-run", 3)
    for directory in (killed, running):
        directory.mkdir(parents=True)
        (directory / "items.arrow").write_bytes(b"staged")
    two_hours_ago = time.time() - 7200
    for path in (killed / "items.arrow", killed, killed.parent):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert discard_stale_runs(timedelta(hours=1)) == ["killed-run"]
    assert not killed.parent.exists() and (running / "items.arrow").exists()

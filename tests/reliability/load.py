"""Load: N processes committing to one dataset for a bounded time, then an exact audit of every row.

Each worker appends batches of keys only it uses (so every acknowledged row can be found exactly once)
and, every fourth commit, upserts two keys all workers share (so lost updates would show). A commit
that gives up (CommitConflictError) is retried with the same idempotency key, as a retried task would.
Engine-internal retries are counted at the `commit.before_log` checkpoint: one per publish attempt.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pyarrow as pa
from report import LoadResult

from storage import Catalog, CommitConflictError, StorageError, faults

SCHEMA = pa.schema(
    [pa.field("id", pa.int64(), nullable=False), ("worker", pa.int64()), ("seq", pa.int64()), ("note", pa.string())]
)
NAME = "load"
SHARED_KEYS = 16  # ids 0..15 are upserted by every worker
ROWS_PER_APPEND = 5


@dataclass
class WorkerReport:
    """What one worker saw: acknowledged commits (snapshot id, op, rows) and its retry counts."""

    worker: int
    acked: list[tuple[int, str, list[dict[str, Any]]]] = field(default_factory=list)
    attempted: list[list[dict[str, Any]]] = field(default_factory=list)
    publish_attempts: int = 0
    caller_retries: int = 0
    errors: list[str] = field(default_factory=list)
    started: float = 0.0  # wall clock of the first and the end of the last commit, for the load window
    ended: float = 0.0


def _append_rows(worker: int, seq: int) -> list[dict[str, Any]]:
    base = SHARED_KEYS + 1_000_000 * (worker + 1) + ROWS_PER_APPEND * seq
    return [{"id": base + j, "worker": worker, "seq": seq, "note": "append"} for j in range(ROWS_PER_APPEND)]


def worker_main(
    root: str,
    options: dict[str, Any],
    worker: int,
    seconds: float,
    barrier: Barrier,
    out: Queue[WorkerReport],
) -> None:
    """Commit until the time is up (entry point of a spawned process)."""
    report = WorkerReport(worker)

    def count(step: str) -> None:
        if step == "commit.before_log":
            report.publish_attempts += 1

    faults.set_hook(count)
    ds = Catalog(root, **options).dataset(NAME)
    rng = random.Random(worker)
    barrier.wait()  # start together so the commits really race
    report.started = time.time()
    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        if seq % 4 == 3:
            op = "upsert"
            data = [
                {"id": k, "worker": worker, "seq": seq, "note": "shared"} for k in rng.sample(range(SHARED_KEYS), 2)
            ]
        else:
            op, data = "append", _append_rows(worker, seq)
        report.attempted.append(data)
        # Retried with the same key while time is left; a batch abandoned at the deadline must be absent.
        while time.monotonic() < deadline:
            try:
                snap = getattr(ds, op)(pa.Table.from_pylist(data, schema=SCHEMA), idempotency_key=f"w{worker}:{seq}")
            except CommitConflictError:
                report.caller_retries += 1  # another writer kept winning (or changed the same shared key)
                continue
            except (StorageError, OSError) as exc:
                report.errors.append(f"{type(exc).__name__}: {exc}")
                break
            report.acked.append((snap.id, op, data))
            break
        seq += 1
    report.ended = time.time()
    out.put(report)


def run_load(backend: str, root: str, options: dict[str, Any], processes: int, seconds: float) -> LoadResult:
    """Create the dataset, run the workers, and audit the result against what they acknowledged."""
    cat = Catalog(root, **options)
    ds = cat.create_dataset(NAME, SCHEMA, ["id"])
    ds.append(pa.Table.from_pylist([{"id": k, "worker": -1, "seq": -1, "note": "seed"} for k in range(SHARED_KEYS)]))
    # Fresh processes forked from a clean server that imported the engine once: nothing is shared with
    # this process, and the workers do not each pay the seconds `import storage` takes. (The server does
    # not get this process's sys.path, so it preloads the installed package, not this test module.)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["storage"])
    barrier = ctx.Barrier(processes)
    out: Queue[WorkerReport] = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(root, options, w, seconds, barrier, out)) for w in range(processes)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    window = max(r.ended for r in reports) - min(r.started for r in reports)
    return audit(backend, Catalog(root, **options), reports, processes, window)


def audit(backend: str, cat: Catalog, reports: list[WorkerReport], processes: int, elapsed: float) -> LoadResult:
    """Compare the dataset with what the workers acknowledged: nothing lost, nothing twice, no stray rows."""
    ds = cat.dataset(NAME)
    stored = ds.read_all().to_pylist()
    by_id = {r["id"]: r for r in stored}
    duplicated = len(stored) - len(by_id)
    lost = 0
    acked_ids: set[int] = set()
    last_shared: dict[int, tuple[int, dict[str, Any]]] = {}
    for report in reports:
        for snapshot_id, op, data in report.acked:
            for r in data:
                acked_ids.add(r["id"])
                if op == "append" and by_id.get(r["id"]) != r:
                    lost += 1
                if op == "upsert" and snapshot_id > last_shared.get(r["id"], (-1, r))[0]:
                    last_shared[r["id"]] = (snapshot_id, r)
    # A shared key must hold the upsert of the newest snapshot that wrote it (no lost update).
    lost += sum(1 for k, (_sid, r) in last_shared.items() if by_id.get(k) != r)
    unacked = sum(1 for i in by_id if i >= SHARED_KEYS and i not in acked_ids)
    try:
        ds.validate()
        valid = True
    except StorageError:
        valid = False
    commits = sum(len(r.acked) for r in reports)
    return LoadResult(
        backend=backend,
        processes=processes,
        seconds=elapsed,
        commits=commits,
        rows=len(stored),
        engine_retries=sum(r.publish_attempts for r in reports) - commits,
        caller_retries=sum(r.caller_retries for r in reports),
        rows_lost=lost,
        rows_duplicated=duplicated,
        rows_unacknowledged=unacked,
        errors=sum(len(r.errors) for r in reports),
        valid=valid,
        error_messages=tuple(m for r in reports for m in r.errors)[:5],
    )

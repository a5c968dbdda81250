"""Entry points of the child processes the storage tests spawn.

They live at module level in a plain module so the "spawn" start method can pickle them by name; each
child opens its own Catalog, so it shares no cache or handle with the test process.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from _model import Layout, Row

from storage import Catalog, CommitConflictError, faults

CONFLICT = "conflict"
BARRIER_TIMEOUT = 60  # seconds; if a sibling died, fail instead of waiting for it forever


@dataclass(frozen=True)
class CommitReport:
    """What one commit of a concurrent writer did: the snapshot id, CONFLICT, or an unexpected error."""

    worker: int
    seq: int
    operation: str
    rows: list[Row]
    outcome: int | str
    count_at_snapshot: int | None = None  # ds.count(version=outcome), read back right after committing


def append_rows(worker: int, seq: int, per_commit: int) -> list[Row]:
    """Rows with keys no other commit uses (worker and sequence number are encoded in the id)."""
    base = 1_000_000 * (worker + 1) + 1_000 * seq
    return [{"id": base + j, "label": f"w{worker}", "score": seq} for j in range(per_commit)]


def concurrent_writer(
    root: str,
    name: str,
    layout: Layout,
    worker: int,
    commits: int,
    shared_keys: list[int],
    barrier: Barrier,
    out: Queue[list[CommitReport]],
) -> None:
    """Alternate appends of unique keys with upserts of keys every worker upserts, reporting each commit."""
    ds = Catalog(root).dataset(name)
    rng = random.Random(worker)
    reports: list[CommitReport] = []
    barrier.wait(timeout=BARRIER_TIMEOUT)  # start together so the commits really race
    for seq in range(commits):
        if seq % 2 == 0:
            operation, rows = "append", append_rows(worker, seq, 3)
        else:
            keys = sorted(rng.sample(shared_keys, 2))
            operation, rows = "upsert", [{"id": k, "label": f"w{worker}s{seq}", "score": seq} for k in keys]
        count = None
        try:
            outcome: int | str = getattr(ds, operation)(layout.table(rows)).id
            count = ds.count(version=outcome)
        except CommitConflictError:
            outcome = CONFLICT
        except Exception as exc:  # reported, not raised: the test asserts there are none
            outcome = f"{type(exc).__name__}: {exc}"
        reports.append(CommitReport(worker, seq, operation, rows, outcome, count))
    out.put(reports)


def idempotent_writer(
    root: str,
    name: str,
    layout: Layout,
    worker: int,
    batches: list[list[Row]],
    barrier: Barrier,
    out: Queue[tuple[int, list[int | str]]],
) -> None:
    """Commit every batch with the same idempotency key as the other workers, all at the same moment."""
    ds = Catalog(root).dataset(name)
    ids: list[int | str] = []
    for i, rows in enumerate(batches):
        barrier.wait(timeout=BARRIER_TIMEOUT)
        try:
            ids.append(ds.append(layout.table(rows), idempotency_key=f"batch-{i}").id)
        except Exception as exc:
            ids.append(f"{type(exc).__name__}: {exc}")
    out.put((worker, ids))


def racing_creator(
    root: str,
    names: list[str],
    layout: Layout,
    worker: int,
    barrier: Barrier,
    out: Queue[tuple[int, list[str]]],
) -> None:
    """Create each dataset (exist_ok) at the same moment as the other workers, then append one own row to it."""
    catalog = Catalog(root)
    errors: list[str] = []
    for name in names:
        barrier.wait(timeout=BARRIER_TIMEOUT)
        try:
            ds = catalog.create_dataset(name, layout.schema, primary_keys=list(layout.primary_keys), exist_ok=True)
            ds.append(layout.table(append_rows(worker, 0, 1)))
        except Exception as exc:  # reported, not raised: the test asserts there are none
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    out.put((worker, errors))


def crash_writer(root: str, name: str, layout: Layout, step: str, operation: str, payload: Any) -> None:
    """Run one write and SIGKILL this process when the commit reaches `step`: no cleanup code can run."""

    def die_at(reached: str) -> None:
        if reached == step:
            os.kill(os.getpid(), signal.SIGKILL)

    ds = Catalog(root).dataset(name)
    faults.set_hook(die_at)
    if operation == "delete":
        ds.delete(keys=payload)
    else:
        getattr(ds, operation)(layout.table(payload))


def upsert_on_signal(
    root: str, name: str, layout: Layout, batches: list[list[Row]], go: Event, out: Queue[int | str]
) -> None:
    """Upsert each batch as soon as `go` is set, reporting its snapshot id: a rival commit at a moment the test
    picks (say, while its own commit is between preparing and publishing)."""
    ds = Catalog(root).dataset(name)
    for rows in batches:
        if not go.wait(timeout=BARRIER_TIMEOUT):
            out.put("timeout: never told to commit")
            return
        go.clear()
        try:
            out.put(ds.upsert(layout.table(rows)).id)
        except Exception as exc:  # reported, not raised: the test asserts there are none
            out.put(f"{type(exc).__name__}: {exc}")


def mutate_or_compact(
    root: str,
    name: str,
    layout: Layout,
    worker: int,
    commits: int,
    keys_per_worker: int,
    barrier: Barrier,
    out: Queue[list[CommitReport]],
) -> None:
    """Worker 0 compacts `commits` times; the others upsert and delete keys of their own, reporting each commit.

    A compaction that found nothing to do reports "noop" (it returns the head it did not change).
    """
    ds = Catalog(root).dataset(name)
    rng = random.Random(worker)
    own = range(1_000 * worker, 1_000 * worker + keys_per_worker)
    reports: list[CommitReport] = []
    compacted: set[int] = set()
    barrier.wait(timeout=BARRIER_TIMEOUT)
    for seq in range(commits):
        rows: list[Row] = []
        try:
            if worker == 0:
                operation = "compact"
                time.sleep(rng.uniform(0, 0.3))  # spread the compactions over the writers' run
                snap = ds.compact()
                fresh = snap.operation == "compact" and snap.id not in compacted
                compacted.add(snap.id)
                outcome: int | str = snap.id if fresh else "noop"
            elif rng.random() < 0.6:
                operation = "upsert"
                rows = [layout.row((k,), f"w{worker}s{seq}", seq) for k in sorted(rng.sample(own, 3))]
                outcome = ds.upsert(layout.table(rows)).id
            else:
                operation = "delete"
                rows = [layout.row((k,), None, None) for k in sorted(rng.sample(own, 2))]
                outcome = ds.delete(keys=[r["id"] for r in rows]).id
        except CommitConflictError:
            outcome = CONFLICT
        except Exception as exc:  # reported, not raised: the test asserts there are none
            outcome = f"{type(exc).__name__}: {exc}"
        reports.append(CommitReport(worker, seq, operation, rows, outcome))
    out.put(reports)


def cached_reader(root: str, name: str, cache_dir: str, worker: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Read the whole dataset through an Arrow cache, at the same moment as the other workers, and report
    the rows it saw (sorted by id)."""
    from storage import ArrowCacheOptions

    ds = Catalog(root, arrow_cache=ArrowCacheOptions(cache_dir)).dataset(name)
    barrier.wait(timeout=BARRIER_TIMEOUT)
    rows = ds.read_all().sort_by("id").to_pylist()
    out.put((worker, rows))


def directory_churner(root: str, worker: int, seconds: float, barrier: Barrier, out: Queue[Any]) -> None:
    """Create objects in one directory and delete them again for `seconds`, every way the local store
    creates one in turn; delete() removes the directory whenever it empties it. Reports the errors seen."""
    from storage.io.local import LocalStore, staging_path

    store = LocalStore(root)
    outside = os.path.join(root, f"src-{worker}")
    os.makedirs(outside)
    errors: list[str] = []
    barrier.wait(BARRIER_TIMEOUT)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        path = f"dv/{worker}-{n}.dv"
        try:
            if n % 4 == 0:
                store.write_bytes(path, b"x")
            elif n % 4 == 1:
                store.put_if_absent(path, b"x")
            else:
                local = staging_path(store, path) if n % 4 == 2 else os.path.join(outside, "f")
                with open(local, "wb") as f:
                    f.write(b"x")
                store.put_file(path, local)
            store.delete(path)
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    out.put((worker, n, errors))

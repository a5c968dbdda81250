"""Ingest WebDataset shards into a project: shards checked and written in parallel, committed once.

`write_shards` fans the shards out (threads of this process with `engine="local"`, Ray tasks with
`engine="ray"`); each worker parses, checks and writes its shard's data files (`worker.write_shard`) and
returns only their descriptions. `commit_shards` then commits all of them in one snapshot of the items
dataset and one of the components dataset, under one idempotency key derived from the shards' content,
so a retried ingest of the same shards commits nothing twice (files a retry wrote in vain are left for
`vacuum`). A sample key used by two shards fails the key check in both, as in one batch: the shards
holding such keys are written again with those samples failing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa

from checks import CheckReport, CheckResult
from storage import Catalog, Snapshot
from storage.groundtruth import dataset_names, ensure_groundtruth

from ..changes import TABLES
from ..commit import CommitOutcome, record_source_rejects
from ..errors import SourceError
from ..json_source import canonical_sha256
from ..quarantine import QuarantineOutcome, commit_files_with_quarantine
from ..rejects import SourceReject
from ..s3_bucket.client import S3Options
from .components import ensure_components
from .location import shard_urls
from .shard import SOURCE
from .worker import ShardFiles, write_shard, write_shard_elsewhere

Engine = Literal["local", "ray"]
ENGINES: tuple[Engine, ...] = ("local", "ray")
OnShard = Callable[[ShardFiles], None]


@dataclass(frozen=True)
class WrittenShards:
    """Every shard's written files before the commit; small, so a flow can pass it between tasks."""

    source: str
    shards: list[ShardFiles]

    @property
    def idempotency_key(self) -> str:
        """Derived from the shards' names and content: the same shards again are the same commit."""
        return f"{self.source}:shards:{canonical_sha256(sorted((s.name, s.sha256) for s in self.shards))}"


@dataclass(frozen=True)
class ShardIngest:
    """What an ingest read and committed."""

    shards: int
    samples: int
    bytes_read: int
    idempotency_key: str
    outcome: CommitOutcome
    report: CheckReport  # the items checks over every sample, as one batch
    source_rejects: list[SourceReject]
    components: Snapshot | None  # the components dataset's snapshot; None when no sample had extra files
    metadata: dict[str, dict[str, bytes]]  # shard-level members (e.g. __meta__) by shard


def ingest_shards(
    catalog: Catalog,
    project: str,
    pattern: str | os.PathLike[str] | Sequence[str],
    *,
    engine: Engine = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    s3: S3Options | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    max_failure_rate: float = 0.1,
) -> ShardIngest:
    """Write every shard `pattern` names in parallel (see `write_shards`) and commit them once."""
    written = write_shards(
        catalog,
        project,
        pattern,
        engine=engine,
        workers=workers,
        ray_address=ray_address,
        s3=s3,
        source=source,
        flow_run_id=flow_run_id,
    )
    return commit_shards(catalog, project, written, max_failure_rate=max_failure_rate)


def write_shards(
    catalog: Catalog,
    project: str,
    pattern: str | os.PathLike[str] | Sequence[str],
    *,
    engine: Engine = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    s3: S3Options | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    on_shard: OnShard | None = None,
) -> WrittenShards:
    """Parse, check and write (without committing) every shard `pattern` names: local paths such as
    `data/train-{000000..000099}.tar`, `s3://bucket/train-{000..009}.tar` read with `s3`'s options, or a
    list of both. With `engine="ray"`, shards are Ray tasks on the running Ray, or on `ray_address`, or
    on a local Ray started (and stopped) for this call with `workers` CPUs. `on_shard` is called in
    this process as each shard is done."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    urls = shard_urls(pattern, s3)
    ensure_groundtruth(catalog, project)
    ensure_components(catalog, project)
    options = {"s3": s3, "source": source, "flow_run_id": flow_run_id}
    with _engine(catalog, project, engine, options, workers, ray_address) as run:
        written = run([(url, {}) for url in urls], on_shard)
        shared = _shared_keys(written)
        if shared:
            redone = run([(written[index].shard, reasons) for index, reasons in shared.items()], None)
            for index, files in zip(shared, redone, strict=True):
                written[index] = files
    return WrittenShards(source, written)


def commit_shards(
    catalog: Catalog,
    project: str,
    written: WrittenShards,
    *,
    max_failure_rate: float = 0.1,
    properties: dict[str, str] | None = None,
) -> ShardIngest:
    """Commit the written shards: their items in one snapshot (failing samples quarantined in the
    items' rejects dataset; BatchRejectedError, committing nothing, if more than `max_failure_rate`
    fail), unreadable members as source rejects, then the passing samples' components in one snapshot.
    `properties` go on the items commit."""
    key = written.idempotency_key
    shards = written.shards
    names = dataset_names(project)
    report = merged_report([s.report for s in shards])
    items = QuarantineOutcome(committed=None, rejected=None, good_rows=0, rejected_rows=0)
    if report.row_count:  # no snapshot for an ingest of empty shards
        items = commit_files_with_quarantine(
            catalog,
            names["items"],
            [f for s in shards for f in s.items],
            report,
            pa.concat_tables([s.rejected for s in shards]),
            [k for s in shards for k in s.keys],
            max_failure_rate=max_failure_rate,
            idempotency_key=f"{key}:items",
            message=f"{len(shards)} WebDataset shard(s)",
            properties=properties,
        )
    source_rejects = [r for s in shards for r in s.source_rejects]
    quarantined = record_source_rejects(catalog, names["items"], source_rejects, key)
    component_files = [f for s in shards for f in s.components]
    components = (
        ensure_components(catalog, project).commit_files(
            component_files, "upsert", idempotency_key=f"{key}:components", message=f"{len(shards)} WebDataset shard(s)"
        )
        if component_files
        else None
    )
    empty = QuarantineOutcome(committed=None, rejected=None, good_rows=0, rejected_rows=0)
    outcome = CommitOutcome(
        tables={table: items if table == "items" else empty for table in TABLES},
        deleted=dict.fromkeys(TABLES, 0),
        source_rejects=quarantined,
    )
    return ShardIngest(
        shards=len(shards),
        samples=report.row_count,
        bytes_read=sum(s.bytes_read for s in shards),
        idempotency_key=key,
        outcome=outcome,
        report=report,
        source_rejects=source_rejects,
        components=components,
        metadata={s.shard: s.metadata for s in shards if s.metadata},
    )


def merged_report(reports: Sequence[CheckReport]) -> CheckReport:
    """The reports of consecutive parts of a batch as the batch's report (rows numbered across parts)."""
    names = list(dict.fromkeys(result.name for report in reports for result in report.results))
    results = tuple(
        CheckResult(
            name,
            all(r.passed for report in reports for r in report.results if r.name == name),
            sum(r.failing_count for report in reports for r in report.results if r.name == name),
        )
        for name in names
    )
    failing, offset = [], 0
    for report in reports:
        failing += [replace(row, row=row.row + offset) for row in report.failing_rows]
        offset += report.row_count
    return CheckReport(row_count=offset, results=results, failing_rows=tuple(failing))


def _shared_keys(written: Sequence[ShardFiles]) -> dict[int, dict[str, str]]:
    """By shard index: the keys it shares with other shards, each with the key check's reason."""
    holders: dict[str, list[int]] = defaultdict(list)
    for index, files in enumerate(written):
        for key in files.keys:
            holders[key].append(index)
    shared: dict[int, dict[str, str]] = defaultdict(dict)
    for key, indexes in holders.items():
        if len(indexes) > 1:
            where = ", ".join(written[i].name for i in indexes)
            reason = f"primary key {key!r} appears in {len(indexes)} shards ({where}); WebDataset keys must be unique"
            for index in indexes:
                shared[index][key] = reason
    return dict(shared)


Jobs = list[tuple[str, Mapping[str, str]]]  # (shard, reasons of the keys that must fail the key check)
Run = Callable[[Jobs, OnShard | None], list[ShardFiles]]


@contextmanager
def _engine(
    catalog: Catalog,
    project: str,
    engine: Engine,
    options: dict[str, Any],
    workers: int | None,
    address: str | None,
) -> Iterator[Run]:
    """A function that runs `write_shard` for each job, in parallel, results in job order."""
    if engine == "local":
        yield lambda jobs, on_shard: _on_threads(catalog, project, jobs, options, workers, on_shard)
        return
    try:
        import ray
    except ImportError:
        raise SourceError(
            "engine='ray' needs Ray, which is not installed: pip install 'ray>=2.9', or use engine='local'"
        ) from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(write_shard_elsewhere)
        spec = {**catalog.spec(), "uri": catalog.uri}  # absolute: a worker's directory may not be ours
        yield lambda jobs, on_shard: _on_ray(ray, remote, spec, project, jobs, options, on_shard)
    finally:
        if started:
            ray.shutdown()


def _on_threads(
    catalog: Catalog, project: str, jobs: Jobs, options: dict[str, Any], workers: int | None, on_shard: OnShard | None
) -> list[ShardFiles]:
    written: list[ShardFiles | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = {
            pool.submit(write_shard, catalog, project, url, duplicates=reasons, **options): index
            for index, (url, reasons) in enumerate(jobs)
        }
        for future in as_completed(futures):
            written[futures[future]] = files = future.result()
            if on_shard is not None:
                on_shard(files)
    return [files for files in written if files is not None]


def _on_ray(
    ray: Any,
    remote: Any,
    spec: dict[str, Any],
    project: str,
    jobs: Jobs,
    options: dict[str, Any],
    on_shard: OnShard | None,
) -> list[ShardFiles]:
    refs = {
        remote.remote(spec, project, url, duplicates=dict(reasons), **options): index
        for index, (url, reasons) in enumerate(jobs)
    }
    written: list[ShardFiles | None] = [None] * len(jobs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            written[refs[ref]] = files = ray.get(ref)
            if on_shard is not None:
                on_shard(files)
    return [files for files in written if files is not None]

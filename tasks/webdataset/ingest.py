"""Ingest WebDataset shards into a project: shards parsed in parallel, committed once.

Parsing fans out (threads in this process with `engine="local"`, Ray tasks with `engine="ray"`); the
driver gathers the parsed shards and commits all samples in one snapshot of the items dataset and one
of the components dataset, under one idempotency key derived from the shards' content, so a retried
ingest of the same shards writes nothing twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from storage import Catalog, Snapshot
from storage.groundtruth import ensure_groundtruth

from ..changes import ChangeSet, canonical_table
from ..commit import CommitOutcome, commit_changes
from ..errors import SourceError
from ..json_source import canonical_sha256
from .components import ensure_components
from .patterns import expand_pattern
from .shard import SOURCE, ParsedShard, parse_shard

Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class ShardIngest:
    """What an ingest read and committed."""

    shards: int
    samples: int
    bytes_read: int
    outcome: CommitOutcome
    components: Snapshot | None  # the components dataset's snapshot; None when no sample had extra files
    metadata: dict[str, dict[str, bytes]]  # shard-level members (e.g. __meta__) by shard


def ingest_shards(
    catalog: Catalog,
    project: str,
    pattern: str | Sequence[str],
    *,
    engine: Engine = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    max_failure_rate: float = 0.1,
) -> ShardIngest:
    """Parse every shard `pattern` names (e.g. `data/train-{000000..000099}.tar`, or a list of paths)
    in parallel and commit them once. With `engine="ray"`, shards are Ray tasks on the running Ray, or
    on `ray_address`, or on a local Ray started (and stopped) for this call with `workers` CPUs."""
    paths = [Path(p).resolve() for p in (expand_pattern(pattern) if isinstance(pattern, str) else pattern)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SourceError(f"{len(missing)} shard(s) not found, e.g. {missing[:3]}; check the pattern and directory")
    if engine == "ray":
        parsed = _parse_with_ray(paths, workers, ray_address, source, flow_run_id)
    elif engine == "local":
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            parsed = list(pool.map(lambda p: parse_shard(p, source=source, flow_run_id=flow_run_id), paths))
    else:
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    return _commit(catalog, project, parsed, source, max_failure_rate)


def _commit(
    catalog: Catalog, project: str, parsed: list[ParsedShard], source: str, max_failure_rate: float
) -> ShardIngest:
    key = f"{source}:shards:{canonical_sha256(sorted((Path(p.shard).name, p.sha256) for p in parsed))}"
    items = pa.concat_tables([p.items for p in parsed]) if parsed else canonical_table("items", [])
    change = ChangeSet(
        items=items, annotations=canonical_table("annotations", []), predictions=canonical_table("predictions", [])
    )
    outcome = commit_changes(
        catalog,
        project,
        change,
        idempotency_key=key,
        max_failure_rate=max_failure_rate,
        message=f"{len(parsed)} WebDataset shard(s)",
        source_rejects=[reject for p in parsed for reject in p.rejects],
    )
    components = _commit_components(catalog, project, parsed, key)
    return ShardIngest(
        shards=len(parsed),
        samples=items.num_rows,
        bytes_read=sum(p.bytes_read for p in parsed),
        outcome=outcome,
        components=components,
        metadata={p.shard: p.metadata for p in parsed if p.metadata},
    )


def _commit_components(catalog: Catalog, project: str, parsed: list[ParsedShard], key: str) -> Snapshot | None:
    """Upsert the components of the samples that were committed (not of quarantined ones)."""
    tables = [p.components for p in parsed if p.components.num_rows]
    if not tables:
        return None
    components = pa.concat_tables(tables)
    wanted = pc.unique(components["item_id"])
    committed = ensure_groundtruth(catalog, project).items.take(wanted.to_pylist(), columns=["id"])["id"]
    kept = components.filter(pc.is_in(components["item_id"], value_set=committed.combine_chunks()))
    if not kept.num_rows:
        return None
    return ensure_components(catalog, project).upsert(kept, idempotency_key=f"{key}:components")


def _parse_with_ray(
    paths: list[Path], workers: int | None, address: str | None, source: str, flow_run_id: str | None
) -> list[ParsedShard]:
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
        remote: Any = ray.remote(parse_shard)
        return list(ray.get([remote.remote(str(p), source=source, flow_run_id=flow_run_id) for p in paths]))
    finally:
        if started:
            ray.shutdown()

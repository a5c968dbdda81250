"""Ingest flow of WebDataset tar shards: workers (threads, or Ray tasks) write the shards' data files, one
commit lands them all.

The write task fans the shards out; each worker parses, checks and writes its shard and hands back only
file descriptions, which the commit task commits in one snapshot per dataset under a key derived from the
shards' content: a retried task or flow run, or the same shards ingested again, commits nothing twice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from tasks.flow_tasks.prefect_tasks import (
    commit_webdataset_shards,
    current_run_id,
    emit_committed,
    write_webdataset_shards,
)
from tasks.s3_bucket import S3Options
from tasks.webdataset import expand_pattern
from tasks.webdataset.ingest import Engine

from .artifacts import ProgressArtifact, artifact_key, publish_ingest
from .ingest import IngestResult
from .settings import DEFAULT_CATALOG, DEFAULT_PROJECT, MAX_FAILURE_RATE

STEPS_AFTER_SHARDS = 2  # commit, emit


@flow(name="ingest-webdataset", retries=1, retry_delay_seconds=2)
def ingest_webdataset(
    pattern: str,
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    engine: Engine = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Ingest the WebDataset shards `pattern` names (`data/train-{000000..000099}.tar`, or
    `s3://bucket/train-{000..009}.tar`) in one commit; samples failing the checks and unusable members
    are quarantined with the reason.

    `engine="ray"` writes shards as Ray tasks: on `ray_address`, on the running Ray, or on a local Ray
    with `workers` CPUs. `endpoint_url` points at an S3-compatible store (MinIO, moto); credentials come
    from boto3's usual chain (environment, profile, role), never from parameters.
    """
    run_id = current_run_id()
    options = S3Options(endpoint_url=endpoint_url or None, region=region or None, profile=profile or None)
    progress = ProgressArtifact(
        artifact_key(project, "ingest-progress"),
        len(expand_pattern(pattern)) + STEPS_AFTER_SHARDS,
        f"WebDataset shards ingested into {project}",
    )
    written = write_webdataset_shards(
        catalog, project, pattern, engine, workers, ray_address, options, lambda _shard: progress.step()
    )
    outcome = commit_webdataset_shards(catalog, project, written, max_failure_rate)
    progress.step()
    emitted = emit_committed(outcome)
    progress.step()
    publish_ingest(project, [outcome])
    get_run_logger().info("Ingested %s shard(s) under key %s", len(written.shards), outcome.idempotency_key)
    return IngestResult(catalog, project, run_id, [outcome], emitted)

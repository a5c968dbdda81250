"""Ingest flow of the S3 bucket source: the objects new under a prefix since the last run, polled on a schedule.

Each batch's items commit carries the watermark that covers it (`tasks.s3_bucket.watermark`) and a key
naming the flow run, so a retried task or flow run finds what it committed, and a crash at any point
neither skips nor duplicates an object: the next attempt lists the prefix again from the last committed
watermark and leaves out the objects the items already hold with the same ETag.
"""

from __future__ import annotations

from prefect import flow

from tasks.flow_tasks.prefect_tasks import plan_bucket, stage_bucket_batch
from tasks.s3_bucket import S3Options

from .ingest import IngestResult, commit_batches
from .settings import DEFAULT_CATALOG, DEFAULT_PROJECT, MAX_FAILURE_RATE

DEFAULT_OVERLAP_SECONDS = 600.0  # longer than the slowest upload: S3 stamps an object when its upload starts


@flow(name="ingest-s3-bucket", retries=1, retry_delay_seconds=10)
def ingest_s3_bucket(
    url: str,
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    threads: int = 16,
    batch_size: int = 1000,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Ingest the objects under `url` (`s3://bucket/prefix`) that are new or changed since the last run,
    `batch_size` per commit, downloading `threads` at a time; corrupt images are quarantined with the reason.

    `endpoint_url` points at an S3-compatible store (MinIO, moto). Credentials come from boto3's usual
    chain (environment, profile, role) of the process that runs the flow, never from parameters.
    """
    # Deployment templates give "" for an unset option: that means boto3's default, like None.
    options = S3Options(
        endpoint_url=endpoint_url or None,
        region=region or None,
        profile=profile or None,
        max_pool_connections=max(threads, 10),
    )
    plan = plan_bucket(catalog, project, url, options, batch_size, overlap_seconds)
    # Staged lazily: a batch is downloaded once the one before it is committed, so one batch is on disk.
    staged = (stage_bucket_batch(options, batch, threads, index) for index, batch in enumerate(plan.batches))
    return commit_batches(catalog, project, staged, total=len(plan.batches), max_failure_rate=max_failure_rate)

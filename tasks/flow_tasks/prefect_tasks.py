"""The Prefect tasks of the flows: each wraps one plain function of this package and logs what it did.

Tasks take and return file directories, snapshot ids and small records (check reports, outcomes),
never whole tables. Caching is off: exactly-once comes from the storage engine's idempotency keys,
not from Prefect's result cache.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import flow_run

from checks import CheckReport
from storage import Catalog
from storage.groundtruth import ensure_groundtruth

from ..changes import TABLES
from ..commit import commit_changes
from ..errors import BatchRejectedError, SourceError
from ..label_studio.api import LabelStudioClient
from ..s3_bucket import BucketPlan, ObjectBatch, S3Options, fetch_batch, plan_prefix, split_url
from ..webdataset.components import components_name
from ..webdataset.ingest import Engine, OnShard, WrittenShards, commit_shards, write_shards
from . import events
from .checking import check_changes, check_summaries, refuse_if_too_many_fail
from .files import coco_batch, labelbox_batches
from .label_studio import export_batch, pull_batch, read_config, webhook_batch
from .maintenance import MaintenanceOutcome, maintain_dataset
from .outcome import BatchOutcome, TableOutcome, table_outcomes
from .refresh import RefreshOutcome, refresh_dependents
from .staging import BatchInfo, ParsedBatch, StagedBatch, SyncState, load_staged, stage_batch, staging_dir
from .sync_state import record_sync_state
from .webhook_inbox import SYNC_KEY, InboxBatch, collect, collect_since, inbox_name, next_batch


def current_run_id() -> str:
    """The flow run's id (`local` outside a flow run, e.g. when a plain function is tested)."""
    return flow_run.get_id() or "local"


def run_started() -> datetime:
    """When the flow run was due to start; snapshots older than this were written by earlier runs."""
    return flow_run.get_scheduled_start_time()


def _worth_retrying(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry transient failures (conflicts, I/O); a refused batch or bad source fails the same again."""
    try:
        state.result()
    except (BatchRejectedError, SourceError):
        return False
    except Exception:
        return True
    return True


def _stage(parsed: ParsedBatch, batch: int) -> StagedBatch:
    staged = stage_batch(parsed, staging_dir(current_run_id(), batch))
    get_run_logger().info(
        "Staged %s: %s rows, %s unreadable records, in %s",
        parsed.info.source_ref,
        staged.rows,
        len(parsed.source_rejects),
        staged.directory,
    )
    return staged


@task(name="stage-label-studio-export", cache_policy=NO_CACHE)
def stage_label_studio_export(path: str, config_path: str | None, batch: int = 0) -> StagedBatch:
    """Parse a Label Studio export file and stage its change set."""
    return _stage(export_batch(path, read_config(config_path), current_run_id()), batch)


@task(
    name="stage-label-studio-pull",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_worth_retrying,
)
def stage_label_studio_pull(
    catalog: str,
    project: str,
    base_url: str,
    project_id: int,
    token_env: str,
    config_path: str | None,
    page_size: int,
    batch: int = 0,
) -> StagedBatch:
    """Pull the tasks changed since the last committed watermark and stage them with the next one."""
    token = os.environ.get(token_env)
    if not token:
        raise SourceError(
            f"${token_env} is not set: put a Label Studio API token (Account & Settings > Legacy Token) in it "
            "in the environment of the process that runs this flow"
        )
    with LabelStudioClient(base_url, token) as client:
        parsed = pull_batch(
            client,
            Catalog(catalog),
            project,
            project_id,
            config=read_config(config_path),
            flow_run_id=current_run_id(),
            page_size=page_size,
        )
    return _stage(parsed, batch)


@task(name="stage-label-studio-webhook", cache_policy=NO_CACHE)
def stage_label_studio_webhook(payload: dict[str, Any], batch: int = 0) -> StagedBatch:
    """Map a Label Studio webhook payload to its upserts and deletes and stage them."""
    return _stage(webhook_batch(payload, current_run_id()), batch)


WEBHOOK_EVENT_RETENTION = timedelta(days=7)  # Prefect's default: older events are gone from its API


@task(name="collect-webhooks", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def collect_webhooks(catalog: str, project: str) -> int:
    """Add the webhook events Prefect holds for this catalog and project that the inbox lacks; how many."""
    cat = Catalog(catalog)
    since = collect_since(cat, project, WEBHOOK_EVENT_RETENTION)
    with get_client(sync_client=True) as client:
        found = events.read_webhook_events(client, cat.uri, project, since)
    added = collect(cat, project, found)
    if added:
        get_run_logger().info("Collected %s new of %s webhook events since %s", added, len(found), since)
    return added


@dataclass(frozen=True)
class StagedWebhooks:
    """The next batch of the inbox: which webhooks, and their staged change set (None: cannot apply)."""

    first: int
    last: int
    staged: StagedBatch | None
    problem: str | None


@task(name="stage-webhooks", cache_policy=NO_CACHE)
def stage_webhooks(catalog: str, project: str, after: int, batch: int) -> StagedWebhooks | None:
    """Stage the inbox's next batch after webhook `after`; None if none waits."""
    found: InboxBatch | None = next_batch(Catalog(catalog), project, after)
    if found is None:
        return None
    staged = _stage(found.parsed, batch) if found.parsed is not None else None
    return StagedWebhooks(found.first, found.last, staged, found.problem)


@task(name="skip-webhook", cache_policy=NO_CACHE)
def skip_webhook(catalog: str, project: str, seq: int, reason: str) -> None:
    """Record webhook `seq` as done without applying it: it cannot be mapped (its payload stays in the inbox)."""
    state = SyncState(SYNC_KEY, json.dumps({"seq": seq}))
    record_sync_state(
        Catalog(catalog), project, state, idempotency_key=f"{SYNC_KEY}:skip:{seq}", flow_run_id=current_run_id()
    )
    get_run_logger().error("Webhook %s of %s skipped: %s", seq, inbox_name(project), reason)


@task(name="stage-coco", cache_policy=NO_CACHE)
def stage_coco(path: str, image_dir: str | None, batch: int = 0) -> StagedBatch:
    """Parse a COCO instances file (reading images from `image_dir` if given) and stage its change set."""
    return _stage(coco_batch(path, image_dir, current_run_id()), batch)


@task(name="stage-labelbox-export", cache_policy=NO_CACHE)
def stage_labelbox(path: str, chunk_lines: int) -> list[StagedBatch]:
    """Parse a Labelbox NDJSON export chunk by chunk, staging each chunk as a batch of its own."""
    return [_stage(parsed, index) for index, parsed in enumerate(labelbox_batches(path, chunk_lines, current_run_id()))]


@task(
    name="plan-s3-bucket", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=_worth_retrying
)
def plan_bucket(
    catalog: str, project: str, url: str, options: S3Options, batch_size: int, overlap_seconds: float
) -> BucketPlan:
    """List `s3://bucket/prefix` and cut the objects new since the last committed watermark into batches."""
    bucket, prefix = split_url(url)
    plan = plan_prefix(
        Catalog(catalog),
        project,
        options.client(),
        bucket,
        prefix,
        batch_size=batch_size,
        overlap=timedelta(seconds=overlap_seconds),
        flow_run_id=current_run_id(),
    )
    get_run_logger().info(
        "Listed %s objects under %s: %s new or changed since %s, in %s batches",
        plan.listed,
        url,
        plan.new,
        plan.previous.since or "the first ingest",
        len(plan.batches),
    )
    return plan


@task(
    name="stage-s3-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=_worth_retrying
)
def stage_bucket_batch(options: S3Options, batch: ObjectBatch, threads: int, index: int) -> StagedBatch:
    """Download a batch of objects (`threads` at a time) and stage it with the watermark that covers it."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        fetched = fetch_batch(options.client(), pool, batch, flow_run_id=current_run_id())
    where = f"s3://{batch.watermark.bucket}/{batch.watermark.prefix}"
    info = BatchInfo(f"{len(batch.objects)} objects from {where}", batch.idempotency_key, properties=batch.properties())
    return _stage(ParsedBatch(fetched.changes, info, fetched.rejects), index)


@task(name="check-batch", cache_policy=NO_CACHE)
def check_staged(catalog: str, project: str, staged: StagedBatch, max_failure_rate: float) -> dict[str, CheckReport]:
    """Run the checks on each table of a staged batch; refuse the whole batch if a table fails too often."""
    cat = Catalog(catalog)
    parsed = load_staged(staged)
    reports = check_changes(cat, project, parsed.changes, staged.info.class_map, staged.info.relation_labels)
    logger = get_run_logger()
    for table, report in reports.items():
        logger.info("Checked %s %s rows: %s failing", report.row_count, table, len(report.failing_rows))
    refuse_if_too_many_fail(cat, project, parsed.changes, reports, max_failure_rate)
    return reports


@task(name="commit-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, retry_condition_fn=_worth_retrying)
def commit_staged(
    catalog: str,
    project: str,
    staged: StagedBatch,
    reports: dict[str, CheckReport],
    key: str,
    max_failure_rate: float,
) -> BatchOutcome:
    """Commit a checked batch (good rows in, bad rows quarantined, stale rows deleted), then its sync state."""
    cat = Catalog(catalog)
    parsed = load_staged(staged)
    groundtruth = ensure_groundtruth(cat, project)
    heads: dict[str, int] = {table: getattr(groundtruth, table).snapshot().id for table in TABLES}
    run_id = current_run_id()
    committed = commit_changes(
        cat,
        project,
        parsed.changes,
        idempotency_key=key,
        class_map=staged.info.class_map,
        relation_labels=staged.info.relation_labels,
        max_failure_rate=max_failure_rate,
        message=f"ingest {staged.info.source_ref}",
        properties={**staged.info.properties, "flow_run_id": run_id},
        source_rejects=parsed.source_rejects,
    )
    tables = table_outcomes(cat, project, committed, reports, heads, run_started(), parsed.source_rejects)
    _log_tables(tables)
    if staged.info.sync_state is not None:
        state = staged.info.sync_state
        snapshot = record_sync_state(cat, project, state, idempotency_key=f"{key}:sync", flow_run_id=run_id)
        get_run_logger().info("Recorded sync state of %s in snapshot %s", state.key, snapshot.id)
    return BatchOutcome(cat.uri, project, key, tables, check_summaries(reports))


def _log_tables(tables: list[TableOutcome]) -> None:
    logger = get_run_logger()
    for table in tables:
        logger.info(
            "%s: snapshot %s (+%s ~%s -%s, %s rejected)%s",
            table.dataset,
            table.snapshot_id,
            table.inserted,
            table.updated,
            table.deleted,
            table.rejected,
            "" if table.new else ", committed before by an earlier run",
        )


@task(
    name="write-webdataset-shards",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=_worth_retrying,
)
def write_webdataset_shards(
    catalog: str,
    project: str,
    pattern: str,
    engine: Engine,
    workers: int | None,
    ray_address: str | None,
    options: S3Options,
    on_shard: OnShard | None = None,
) -> WrittenShards:
    """Parse, check and write the data files of every shard in parallel (threads or Ray tasks), uncommitted."""
    written = write_shards(
        Catalog(catalog),
        project,
        pattern,
        engine=engine,
        workers=workers,
        ray_address=ray_address,
        s3=options,
        flow_run_id=current_run_id(),
        on_shard=on_shard,
    )
    shards = written.shards
    get_run_logger().info(
        "Wrote %s shard(s) with %s on %s: %s samples, %s failing checks, %s unreadable members",
        len(shards),
        "Ray" if engine == "ray" else "threads",
        pattern,
        sum(s.report.row_count for s in shards),
        sum(len(s.report.failing_rows) for s in shards),
        sum(len(s.source_rejects) for s in shards),
    )
    return written


@task(
    name="commit-webdataset-shards",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_worth_retrying,
)
def commit_webdataset_shards(
    catalog: str, project: str, written: WrittenShards, max_failure_rate: float
) -> BatchOutcome:
    """Commit every written shard once: items (failing samples quarantined), source rejects, components."""
    cat = Catalog(catalog)
    groundtruth = ensure_groundtruth(cat, project)
    heads: dict[str, int] = {table: getattr(groundtruth, table).snapshot().id for table in TABLES}
    ingest = commit_shards(
        cat, project, written, max_failure_rate=max_failure_rate, properties={"flow_run_id": current_run_id()}
    )
    none = CheckReport(row_count=0, results=(), failing_rows=())
    reports = {"items": ingest.report, "annotations": none, "predictions": none}
    started = run_started()
    rejects = tuple(ingest.source_rejects)
    tables = table_outcomes(cat, project, ingest.outcome, reports, heads, started, rejects)
    if ingest.components is not None:
        snap = ingest.components
        tables.append(
            TableOutcome(
                table="components",
                dataset=components_name(project),
                snapshot_id=snap.id,
                parent_id=snap.parent_id,
                inserted=snap.summary.get("rows_inserted", 0),
                updated=snap.summary.get("rows_updated", 0),
                deleted=0,
                rejected=0,
                new=snap.created_at >= started,
            )
        )
    _log_tables(tables)
    return BatchOutcome(cat.uri, project, ingest.idempotency_key, tables, check_summaries(reports))


@task(name="emit-committed", cache_policy=NO_CACHE)
def emit_committed(outcome: BatchOutcome) -> list[str]:
    """Announce each dataset the batch changed with a `labelhouse.dataset.committed` event."""
    emitted = events.emit_committed(outcome)
    get_run_logger().info("Emitted %s %s events", len(emitted), events.DATASET_COMMITTED)
    return emitted


@task(name="refresh-dependents", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def refresh(catalog: str, dataset: str, snapshot_id: int) -> RefreshOutcome:
    """Refresh what depends on a dataset up to a snapshot; validate it; advance its `refreshed` tag."""
    outcome = refresh_dependents(Catalog(catalog), dataset, snapshot_id)
    get_run_logger().info(
        "%s @ %s: %s dependents refreshed, %s snapshots validated, refreshed tag %s",
        dataset,
        snapshot_id,
        len(outcome.dependents),
        outcome.snapshots_validated,
        "moved" if outcome.tag_moved else f"kept at {outcome.previous_refreshed}",
    )
    return outcome


@task(name="maintain-dataset", cache_policy=NO_CACHE)
def maintain(
    catalog: str, dataset: str, keep_last: int, older_than: timedelta, vacuum_grace: timedelta
) -> MaintenanceOutcome:
    """Compact, expire and vacuum one dataset."""
    outcome = maintain_dataset(
        Catalog(catalog), dataset, keep_last=keep_last, older_than=older_than, vacuum_grace=vacuum_grace
    )
    get_run_logger().info("%s", outcome)
    return outcome

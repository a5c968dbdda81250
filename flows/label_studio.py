"""Ingest flows of the Label Studio source: an export file, an API pull, one webhook payload, and the
webhooks `labelhouse webhooks` accepted (collected from Prefect's events, applied in batches)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger

from storage import Catalog
from tasks.errors import SourceError
from tasks.flow_tasks.outcome import BatchOutcome
from tasks.flow_tasks.prefect_tasks import (
    collect_webhooks,
    current_run_id,
    skip_webhook,
    stage_label_studio_export,
    stage_label_studio_pull,
    stage_label_studio_webhook,
    stage_webhooks,
)
from tasks.flow_tasks.staging import discard_run
from tasks.flow_tasks.webhook_inbox import applied_seq, holds, inbox_name, pending

from .artifacts import ProgressArtifact, artifact_key, publish_ingest
from .ingest import IngestResult, commit_batch, commit_batches
from .settings import DEFAULT_CATALOG, DEFAULT_PROJECT, MAX_FAILURE_RATE

DEFAULT_TOKEN_ENV = "LABEL_STUDIO_TOKEN"


@flow(name="ingest-label-studio-export", retries=1, retry_delay_seconds=2)
def ingest_label_studio_export(
    path: str,
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    config: str | None = None,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Ingest a Label Studio export file (JSON, snapshot or JSON_MIN, recognised from its content) of a whole
    project: the project's datasets become equal to it; rows failing the checks are quarantined.

    `config` is the path of the labeling config XML: labels are checked against it (JSON_MIN needs it).
    """
    staged = stage_label_studio_export(path, config)
    return commit_batches(catalog, project, [staged], total=1, max_failure_rate=max_failure_rate)


@flow(name="ingest-label-studio-pull", retries=1, retry_delay_seconds=10)
def ingest_label_studio_pull(
    base_url: str,
    label_studio_project: int,
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    token_env: str = DEFAULT_TOKEN_ENV,
    config: str | None = None,
    page_size: int = 100,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Pull the tasks of a Label Studio project changed since the last pull (and drop deleted ones).

    The API token is read from the environment variable named by `token_env`, never passed as a
    parameter (parameters are stored in plain text by Prefect).
    """
    staged = stage_label_studio_pull(catalog, project, base_url, label_studio_project, token_env, config, page_size)
    return commit_batches(catalog, project, [staged], total=1, max_failure_rate=max_failure_rate)


@flow(name="ingest-label-studio-webhook", retries=1, retry_delay_seconds=2)
def ingest_label_studio_webhook(
    payload: dict[str, Any],
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    max_failure_rate: float = MAX_FAILURE_RATE,
) -> IngestResult:
    """Apply one Label Studio webhook payload: annotation and task upserts and deletes (`labelhouse ingest
    label-studio-webhook`; the webhooks `labelhouse webhooks` accepts go through apply-label-studio-webhooks)."""
    staged = stage_label_studio_webhook(payload)
    return commit_batches(catalog, project, [staged], total=1, max_failure_rate=max_failure_rate)


# A trigger with `within` of 5 s starts a run for the first webhook of a burst and ignores the others for
# 5 s; Prefect stores events in batches at least every 5 s. A run started by a webhook keeps collecting
# until WEBHOOK_SETTLE after it, so every webhook such a trigger ignored is collected by a run.
WEBHOOK_SETTLE = timedelta(seconds=20)
WEBHOOK_POLL_SECONDS = 2.0
WEBHOOK_WAIT_FOR_EVENT = timedelta(minutes=2)  # how long a triggered run waits to see its own event stored
WEBHOOK_RUN_LIMIT = timedelta(minutes=10)  # then the run stops collecting; queued runs or the schedule go on


@flow(name="apply-label-studio-webhooks", retries=0)
def apply_label_studio_webhooks(
    catalog: str = DEFAULT_CATALOG,
    project: str = DEFAULT_PROJECT,
    event_id: str | None = None,
    occurred: str | None = None,
) -> IngestResult:
    """Collect the Label Studio webhooks Prefect holds for this catalog and project into the project's
    webhook inbox and apply every one not applied yet, in order, many per commit, each exactly once.

    `event_id` and `occurred` are the triggering webhook event's: the run goes on collecting until that
    event is in the inbox and no new one arrived for a while. Rows failing the checks are quarantined and
    no batch is refused: a batch is many annotators' separate work, and one bad annotation must not hold
    back the rest. A webhook the mapping refuses is skipped, kept in the inbox, and fails the run.
    """
    logger = get_run_logger()
    run_id = current_run_id()
    started = datetime.now(UTC)
    settle = datetime.fromisoformat(occurred) + WEBHOOK_SETTLE if occurred else started
    progress = ProgressArtifact(artifact_key(project, "webhook-progress"), 0, f"Webhooks applied to {project}")
    outcomes: list[BatchOutcome] = []
    emitted: list[str] = []
    skipped: list[str] = []
    while True:
        added = collect_webhooks(catalog, project)
        progress.expect(pending(Catalog(catalog), project))
        while staged := stage_webhooks(catalog, project, applied_seq(Catalog(catalog), project), len(outcomes)):
            if staged.staged is None:
                skip_webhook(catalog, project, staged.last, staged.problem or "cannot be mapped")
                skipped.append(f"{staged.last}: {staged.problem}")
                progress.step()
                continue
            key = staged.staged.info.idempotency_key
            assert key is not None  # inbox batches are keyed by their webhooks
            outcome, events = commit_batch(catalog, project, staged.staged, key, max_failure_rate=1.0)
            progress.step(staged.last - staged.first + 1)
            outcomes.append(outcome)
            emitted += events
            logger.info("Webhooks %s-%s of %s applied (key %s)", staged.first, staged.last, inbox_name(project), key)
        now = datetime.now(UTC)
        seen = event_id is None or holds(Catalog(catalog), project, event_id)
        if added == 0 and now >= settle and (seen or now - started >= WEBHOOK_WAIT_FOR_EVENT):
            if not seen:
                logger.warning("Webhook event %s never reached Prefect's event store; applied what arrived", event_id)
            break
        if now - started >= WEBHOOK_RUN_LIMIT:
            logger.warning("Stopped collecting after %s; the next run applies the webhooks still coming", now - started)
            break
        if added == 0:
            time.sleep(WEBHOOK_POLL_SECONDS)
    publish_ingest(project, outcomes)
    discard_run(run_id)
    if skipped:
        raise SourceError(
            f"{len(skipped)} webhook(s) of {inbox_name(project)} could not be mapped and were skipped (their payloads "
            f"stay in the inbox): " + "; ".join(skipped)
        )
    return IngestResult(catalog, project, run_id, outcomes, emitted)

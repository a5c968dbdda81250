"""Ingest flows of the Label Studio source: an export file, an API pull, a webhook payload."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.flow_tasks.prefect_tasks import (
    stage_label_studio_export,
    stage_label_studio_pull,
    stage_label_studio_webhook,
)

from .ingest import IngestResult, commit_batches
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
    """Apply one Label Studio webhook payload: annotation and task upserts and deletes."""
    staged = stage_label_studio_webhook(payload)
    return commit_batches(catalog, project, [staged], total=1, max_failure_rate=max_failure_rate)

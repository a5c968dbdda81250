"""The deployments `labelhouse serve` registers and serves in one process: schedules and event triggers.

- `refresh-dataset/on-commit`: a `labelhouse.dataset.committed` event of this catalog starts the refresh
  of that dataset up to the event's snapshot.
- `apply-label-studio-webhooks/on-webhook`: a `labelhouse.label_studio.webhook` event for this catalog
  (sent by `labelhouse webhooks`) starts a run that collects that project's webhooks into its inbox and
  applies them many per commit; a burst starts one run (the trigger waits WEBHOOK_THROTTLE between runs),
  one run at a time, and a sweep every WEBHOOK_SWEEP_SECONDS applies whatever a trigger missed.
- `ingest-label-studio-pull/scheduled`: pulls the configured Label Studio project on a cron schedule
  (no schedule until a Label Studio URL and project are given).
- `ingest-s3-bucket/polling`: ingests the objects new under the configured bucket prefix on a cron or
  interval schedule (no schedule until a bucket URL is given).
- `maintain-catalog/nightly`: compact, expire and vacuum on a cron schedule.
- `ingest-label-studio-export/on-demand`: run by hand (UI, `prefect deployment run`) with a file path.

`infra/prefect.yaml` declares the same deployments for `prefect deploy` on a process work pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.types.entrypoint import EntrypointType

from storage import Catalog
from tasks.flow_tasks.events import (
    CATALOG_LABEL,
    DATASET_COMMITTED,
    DATASET_RESOURCE_PREFIX,
    PROJECT_LABEL,
    WEBHOOK_RECEIVED,
    WEBHOOK_RESOURCE_PREFIX,
)

from .bucket import ingest_s3_bucket
from .label_studio import (
    DEFAULT_TOKEN_ENV,
    apply_label_studio_webhooks,
    ingest_label_studio_export,
    ingest_label_studio_pull,
)
from .maintenance import maintain_catalog
from .refresh import refresh_dataset
from .settings import DEFAULT_BUCKET_CRON, DEFAULT_MAINTENANCE_CRON, DEFAULT_PULL_CRON

TAGS = ["labelhouse"]
# One run per burst of webhooks: the run started by its first webhook collects the rest (see
# flows.label_studio.WEBHOOK_SETTLE), so a trigger per webhook would only queue runs with nothing to do.
WEBHOOK_THROTTLE = timedelta(seconds=5)
WEBHOOK_SWEEP_SECONDS = 300  # a run even without triggers: webhooks whose trigger was missed still land


@dataclass(frozen=True)
class ServeOptions:
    """What the served deployments work on and when their schedules fire."""

    catalog: str
    project: str
    maintenance_cron: str = DEFAULT_MAINTENANCE_CRON
    pull_cron: str = DEFAULT_PULL_CRON
    label_studio_url: str | None = None
    label_studio_project: int | None = None
    label_studio_config: str | None = None
    token_env: str = DEFAULT_TOKEN_ENV
    bucket_url: str | None = None  # s3://bucket/prefix to poll
    bucket_endpoint_url: str | None = None
    bucket_cron: str = DEFAULT_BUCKET_CRON
    bucket_interval_seconds: int | None = None  # polls at this interval instead of `bucket_cron` when set


def committed_trigger(catalog_uri: str) -> DeploymentEventTrigger:
    """Start the refresh flow for the dataset and snapshot a committed event of this catalog names."""
    return DeploymentEventTrigger(
        name="refresh on commit",
        expect={DATASET_COMMITTED},
        match={"prefect.resource.id": f"{DATASET_RESOURCE_PREFIX}*", CATALOG_LABEL: catalog_uri},
        parameters={
            "catalog": catalog_uri,
            "dataset": "{{ event.payload.dataset }}",
            "snapshot_id": "{{ event.payload.snapshot_id }}",
        },
    )


def webhook_trigger(catalog_uri: str) -> DeploymentEventTrigger:
    """Start the webhook flow for the project of a webhook event meant for this catalog, once per burst."""
    return DeploymentEventTrigger(
        name="apply on webhook",
        expect={WEBHOOK_RECEIVED},
        match={"prefect.resource.id": f"{WEBHOOK_RESOURCE_PREFIX}*", CATALOG_LABEL: catalog_uri},
        within=WEBHOOK_THROTTLE,
        for_each={PROJECT_LABEL},  # throttled per project: a run applies only its own project's webhooks
        # Prefect renders a lone `{{ x }}` through `tojson`, which refuses a UUID or a datetime: hence `string`.
        parameters={
            "catalog": catalog_uri,
            "project": f"{{{{ event.resource['{PROJECT_LABEL}'] }}}}",
            "event_id": "{{ event.id | string }}",
            "occurred": "{{ event.occurred | string }}",
        },
    )


def build_deployments(options: ServeOptions) -> list[RunnerDeployment]:
    """Every Labelhouse deployment for one catalog and project (see the module docstring)."""
    catalog = Catalog(options.catalog).uri  # the canonical URI events carry
    pull_ready = options.label_studio_url is not None and options.label_studio_project is not None
    return [
        _deployment(refresh_dataset, "on-commit", triggers=[committed_trigger(catalog)]),
        _deployment(
            apply_label_studio_webhooks,
            "on-webhook",
            triggers=[webhook_trigger(catalog)],
            interval=WEBHOOK_SWEEP_SECONDS,
            parameters={"catalog": catalog, "project": options.project},
            concurrency_limit=1,
        ),
        _deployment(
            ingest_label_studio_pull,
            "scheduled",
            cron=options.pull_cron if pull_ready else None,
            parameters={
                "catalog": catalog,
                "project": options.project,
                "token_env": options.token_env,
                "config": options.label_studio_config,
                **({"base_url": options.label_studio_url} if options.label_studio_url else {}),
                **({"label_studio_project": options.label_studio_project} if options.label_studio_project else {}),
            },
            concurrency_limit=1,
        ),
        _deployment(
            ingest_s3_bucket,
            "polling",
            cron=options.bucket_cron if options.bucket_url and not options.bucket_interval_seconds else None,
            interval=options.bucket_interval_seconds if options.bucket_url else None,
            parameters={
                "catalog": catalog,
                "project": options.project,
                "endpoint_url": options.bucket_endpoint_url,
                **({"url": options.bucket_url} if options.bucket_url else {}),
            },
            concurrency_limit=1,
        ),
        _deployment(
            maintain_catalog,
            "nightly",
            cron=options.maintenance_cron,
            parameters={"catalog": catalog},
            concurrency_limit=1,
        ),
        _deployment(
            ingest_label_studio_export, "on-demand", parameters={"catalog": catalog, "project": options.project}
        ),
    ]


def _deployment(flow: Flow[..., Any], name: str, **options: Any) -> RunnerDeployment:
    # Module entrypoints: served runs import the flow from the installed package, whatever the cwd.
    deployment = flow.to_deployment(name, tags=TAGS, entrypoint_type=EntrypointType.MODULE_PATH, **options)
    return cast(RunnerDeployment, deployment)  # from sync code it is the deployment, not a coroutine


def serve_all(options: ServeOptions, limit: int | None = None) -> None:
    """Register every deployment and run their flow runs in this process until interrupted."""
    serve(*build_deployments(options), limit=limit)

"""`labelhouse serve` and `webhooks`: the long-running processes, both talking to a Prefect server."""

from __future__ import annotations

from typing import Annotated

import typer

from ...settings import DEFAULT_BUCKET_CRON, DEFAULT_MAINTENANCE_CRON, DEFAULT_PROJECT, DEFAULT_PULL_CRON
from ..options import DEFAULT_CATALOG, CatalogOption
from .ingest import ProjectOption


def _require_prefect_api() -> None:
    # Served runs and webhook events go through a Prefect server; Prefect's ephemeral API lives only as
    # long as one process and would never see the other's events.
    from prefect.settings import PREFECT_API_URL  # the environment or the active Prefect profile

    if not PREFECT_API_URL.value():
        typer.echo(
            "Error: no Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api); start one with "
            "`python infra/services.py start prefect-server`",
            err=True,
        )
        raise typer.Exit(2)


def serve(
    project: ProjectOption = DEFAULT_PROJECT,
    maintenance_cron: Annotated[
        str, typer.Option("--maintenance-cron", envvar="LABELHOUSE_MAINTENANCE_CRON", help="When maintenance runs.")
    ] = DEFAULT_MAINTENANCE_CRON,
    pull_cron: Annotated[
        str,
        typer.Option("--pull-cron", envvar="LABELHOUSE_PULL_CRON", help="When the Label Studio project is pulled."),
    ] = DEFAULT_PULL_CRON,
    label_studio_url: Annotated[
        str | None, typer.Option("--label-studio-url", envvar="LABEL_STUDIO_URL", help="Label Studio to pull from.")
    ] = None,
    label_studio_project: Annotated[
        int | None,
        typer.Option("--label-studio-project", envvar="LABEL_STUDIO_PROJECT", help="Label Studio project id to pull."),
    ] = None,
    label_studio_config: Annotated[
        str | None, typer.Option("--label-studio-config", help="Labeling config XML to check pulled labels against.")
    ] = None,
    bucket_url: Annotated[
        str | None,
        typer.Option("--bucket-url", envvar="LABELHOUSE_BUCKET_URL", help="s3://bucket/prefix to poll."),
    ] = None,
    bucket_endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--bucket-endpoint-url", envvar="LABELHOUSE_BUCKET_ENDPOINT_URL", help="The bucket's S3 endpoint."
        ),
    ] = None,
    bucket_cron: Annotated[
        str, typer.Option("--bucket-cron", envvar="LABELHOUSE_BUCKET_CRON", help="When the bucket is polled.")
    ] = DEFAULT_BUCKET_CRON,
    bucket_interval: Annotated[
        int | None,
        typer.Option(
            "--bucket-interval",
            min=1,
            envvar="LABELHOUSE_BUCKET_INTERVAL",
            help="Poll the bucket every this many seconds instead of on --bucket-cron.",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many flow runs at once.")] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Register every deployment (schedules and event triggers) and run their flow runs until interrupted.

    The pull is scheduled once --label-studio-url and --label-studio-project are given; the token is read
    from $LABEL_STUDIO_TOKEN by each run. The bucket is polled once --bucket-url is given; its credentials
    come from the AWS environment of this process.
    """
    _require_prefect_api()
    from ...deployments import ServeOptions, serve_all  # imports Prefect and every flow

    options = ServeOptions(
        catalog=catalog,
        project=project,
        maintenance_cron=maintenance_cron,
        pull_cron=pull_cron,
        label_studio_url=label_studio_url,
        label_studio_project=label_studio_project,
        label_studio_config=label_studio_config,
        bucket_url=bucket_url,
        bucket_endpoint_url=bucket_endpoint_url,
        bucket_cron=bucket_cron,
        bucket_interval_seconds=bucket_interval,
    )
    serve_all(options, limit=limit)


def webhooks(
    secret: Annotated[
        str,
        typer.Option(
            "--secret",
            envvar="LABELHOUSE_WEBHOOK_SECRET",
            show_envvar=True,
            help="Shared secret Label Studio sends in the X-Labelhouse-Secret header.",
        ),
    ],
    project: ProjectOption = DEFAULT_PROJECT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="LABELHOUSE_WEBHOOK_PORT", help="Port to listen on.")] = 8765,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Refuse larger bodies with 413.")] = 1
    << 20,
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Receive Label Studio webhooks and turn each into a Prefect event for `labelhouse serve`.

    Label Studio posts to http://HOST:PORT/label-studio with the X-Labelhouse-Secret header; each accepted
    webhook starts the webhook ingest deployment. Bad requests get a 4xx with the reason.
    """
    _require_prefect_api()
    from storage import Catalog

    from ...webhooks import create_app, serve_webhooks

    app = create_app(secret=secret, catalog=Catalog(catalog).uri, project=project, max_body_bytes=max_body_bytes)
    serve_webhooks(app, host, port)

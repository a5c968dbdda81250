"""The maintenance flow: compact, expire and vacuum the datasets of a catalog (nightly by default)."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger

from storage import Catalog
from tasks.flow_tasks.maintenance import MaintenanceOutcome
from tasks.flow_tasks.prefect_tasks import maintain
from tasks.flow_tasks.staging import discard_stale_runs

from .artifacts import publish_maintenance
from .settings import DEFAULT_CATALOG


@flow(name="maintain-catalog")
def maintain_catalog(
    catalog: str = DEFAULT_CATALOG,
    datasets: list[str] | None = None,
    keep_last: int = 20,
    older_than_days: float = 7.0,
    vacuum_grace_hours: float = 1.0,
) -> list[MaintenanceOutcome]:
    """Compact every dataset (or those named), expire snapshots older than `older_than_days` beyond the
    newest `keep_last` per branch, and vacuum files unreferenced for `vacuum_grace_hours` (and staged
    batches of killed ingest runs left that long)."""
    names = datasets if datasets is not None else Catalog(catalog).datasets()
    get_run_logger().info("Maintaining %s datasets of %s", len(names), catalog)
    outcomes = [
        maintain(
            catalog,
            name,
            keep_last,
            timedelta(days=older_than_days),
            timedelta(hours=vacuum_grace_hours),
        )
        for name in names
    ]
    publish_maintenance(catalog, outcomes)
    # Killed ingest runs leave their staged batches in this machine's staging directory; reruns do not
    # reuse them (a new flow run stages anew), so they go with the other unreferenced files.
    discarded = discard_stale_runs(timedelta(hours=vacuum_grace_hours))
    get_run_logger().info("Removed the staged batches of %s runs that ended without removing them", len(discarded))
    return outcomes

"""The refresh flow: what depends on a dataset is brought up to a snapshot (started by committed events)."""

from __future__ import annotations

from prefect import flow

from tasks.flow_tasks.prefect_tasks import refresh
from tasks.flow_tasks.refresh import RefreshOutcome

from .artifacts import publish_refresh


@flow(name="refresh-dataset", flow_run_name="refresh-{dataset}-at-{snapshot_id}")
def refresh_dataset(catalog: str, dataset: str, snapshot_id: int) -> RefreshOutcome:
    """Refresh the materialized views and vector indexes over `dataset` up to `snapshot_id`, validate the
    dataset, and move its `refreshed` tag forward."""
    outcome = refresh(catalog, dataset, snapshot_id)
    publish_refresh(outcome)
    return outcome

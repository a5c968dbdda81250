"""Bring what depends on a dataset up to one of its snapshots, and record how far it got.

Dependents are the catalog's materialized views reading the dataset (`cat.views(dataset)`) and vector
indexes over it (`cat.vector_indexes(dataset)`), then, transitively, the views and indexes over those
views. A view is refreshed with the dataset pinned at the snapshot (its other sources at their heads);
what depends on a view follows at the view's new snapshot. Refreshes are incremental and idempotent, so
a repeated or late event costs little. The dataset is validated first, and its `refreshed` tag moves
forward to the snapshot, so readers see how far derived data goes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from storage import Catalog, Dataset

REFRESHED_TAG = "refreshed"


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh did: dependents refreshed, the validation, and the `refreshed` tag's move."""

    catalog: str
    dataset: str
    snapshot_id: int
    previous_refreshed: int | None  # where the tag was before; None: never refreshed
    tag_moved: bool  # False when a later snapshot was already refreshed (events can arrive out of order)
    snapshots_validated: int
    data_files_validated: int
    dependents: list[dict[str, Any]] = field(default_factory=list)  # kind, name, source, and the refresh stats


def refresh_dependents(catalog: Catalog, dataset: str, snapshot_id: int) -> RefreshOutcome:
    """Refresh every view and index over `dataset` up to `snapshot_id`, validate, and advance the tag.

    Raises VersionNotFoundError if the dataset has no such snapshot, CorruptDatasetError if it fails
    validation (nothing is refreshed then).
    """
    ds = catalog.dataset(dataset)
    snapshot = ds.snapshot(snapshot_id)
    report = ds.validate()
    refreshed = _refresh_over(catalog, dataset, snapshot.id)
    previous, moved = _advance_refreshed_tag(ds, snapshot.id)
    return RefreshOutcome(
        catalog=catalog.uri,
        dataset=dataset,
        snapshot_id=snapshot.id,
        previous_refreshed=previous,
        tag_moved=moved,
        snapshots_validated=report.snapshots,
        data_files_validated=report.data_files,
        dependents=refreshed,
    )


def _refresh_over(catalog: Catalog, source: str, snapshot_id: int) -> list[dict[str, Any]]:
    """Refresh the views and indexes reading `source` at `snapshot_id`, then what reads those views."""
    done: list[dict[str, Any]] = []
    for name in catalog.vector_indexes(source):
        stats = catalog.vector_index(name).refresh(version=snapshot_id)
        done.append({"kind": "vector_index", "name": name, "source": source, **asdict(stats)})
    for name in catalog.views(source):
        view_stats = catalog.materialized_view(name).refresh(version={source: snapshot_id})
        done.append({"kind": "materialized_view", "name": name, "source": source, **asdict(view_stats)})
        done += _refresh_over(catalog, name, view_stats.snapshot_id)
    return done


def _advance_refreshed_tag(ds: Dataset, snapshot_id: int) -> tuple[int | None, bool]:
    previous = ds.tags().get(REFRESHED_TAG)
    if previous is not None and previous >= snapshot_id:
        return previous, False
    ds.tag(REFRESHED_TAG, version=snapshot_id, force=True)
    return previous, True

"""Routine upkeep of a dataset: compact small or deletion-heavy files, expire old snapshots, vacuum."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from storage import Catalog


@dataclass(frozen=True)
class MaintenanceOutcome:
    dataset: str
    compacted_to: int | None  # the compaction's new snapshot; None when nothing needed compacting
    snapshots_expired: int
    files_removed: int
    bytes_removed: int


def maintain_dataset(
    catalog: Catalog, name: str, *, keep_last: int, older_than: timedelta, vacuum_grace: timedelta
) -> MaintenanceOutcome:
    """Compact, then expire snapshots older than `older_than` beyond the newest `keep_last` per branch,
    then vacuum files unreferenced for longer than `vacuum_grace` (running writers keep theirs)."""
    ds = catalog.dataset(name)
    head = ds.snapshot().id
    compacted = ds.compact()
    expired = ds.expire(older_than=older_than, keep_last=keep_last)
    vacuumed = ds.vacuum(grace_period=vacuum_grace)
    return MaintenanceOutcome(
        dataset=name,
        compacted_to=compacted.id if compacted.id != head else None,
        snapshots_expired=len(expired.expired),
        files_removed=vacuumed.files_removed,
        bytes_removed=vacuumed.bytes_removed,
    )

"""Plain records (dicts) of storage objects: what `--json` prints and what the tables render."""

from __future__ import annotations

import json
from typing import Any

from storage import Dataset, Snapshot


def dataset_record(ds: Dataset) -> dict[str, Any]:
    """A dataset at its `main` head: keys, rows, branches and tags."""
    head = ds.snapshot()
    return {
        "name": ds.name,
        "primary_keys": ds.primary_keys,
        "snapshot_id": head.id,
        "rows": ds.count(version=head.id),
        "updated_at": head.created_at,
        "branches": sorted(ds.branches()),
        "tags": sorted(ds.tags()),
    }


def snapshot_record(ds: Dataset, snap: Snapshot) -> dict[str, Any]:
    """A snapshot a write returned, under the key names version records use, plus its dataset."""
    return {
        "dataset": ds.name,
        "snapshot_id": snap.id,
        "parent_id": snap.parent_id,
        "branch": snap.branch,
        "created_at": snap.created_at,
        "operation": snap.operation,
        "message": snap.message,
        "summary": snap.summary,
    }


def version_records(ds: Dataset, branch: str | None = None) -> list[dict[str, Any]]:
    """The dataset's versions, oldest first; with `branch`, only that branch's head and its ancestors."""
    records: list[dict[str, Any]] = ds.versions().to_pylist()
    for record in records:
        # versions() keeps these as JSON text; scripts want them as objects.
        record["properties"] = json.loads(record["properties"])
        record["summary"] = json.loads(record["summary"])
    if branch is None:
        return records
    by_id = {r["snapshot_id"]: r for r in records}
    lineage = []
    sid: int | None = ds.branch(branch).snapshot().id
    while sid in by_id:
        lineage.append(by_id[sid])
        sid = by_id[sid]["parent_id"]
    return lineage[::-1]

"""Where each source got to (pull watermarks), kept in the project's `<project>__sync` dataset.

The state row of a batch is committed after the batch's rows, keyed like them: a crash before it
re-reads from the previous state (the rows are upserts, so nothing doubles); once it is committed the
next run starts after it, so nothing is skipped. The commit's properties carry the state too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from storage import Catalog, DatasetNotFoundError, Snapshot

from .staging import SyncState

SYNC_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # SyncState.key
        pa.field("value", pa.string(), nullable=False),
        pa.field("flow_run_id", pa.string()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def sync_dataset_name(project: str) -> str:
    return f"{project}__sync"


def read_sync_state(catalog: Catalog, project: str, key: str) -> str | None:
    """The last committed state of source `key`, or None if it never committed one."""
    try:
        dataset = catalog.dataset(sync_dataset_name(project))
    except DatasetNotFoundError:
        return None
    rows = dataset.read_all(filter=pc.field("id") == key, columns=["value"])
    return rows["value"][0].as_py() if rows.num_rows else None


def record_sync_state(
    catalog: Catalog, project: str, state: SyncState, *, idempotency_key: str, flow_run_id: str | None
) -> Snapshot:
    """Commit `state` as the source's latest; the same key again is a no-op."""
    dataset = catalog.create_dataset(sync_dataset_name(project), SYNC_SCHEMA, primary_keys=["id"], exist_ok=True)
    row = {"id": state.key, "value": state.value, "flow_run_id": flow_run_id, "updated_at": datetime.now(UTC)}
    return dataset.upsert(
        pa.Table.from_pylist([row], schema=SYNC_SCHEMA),
        idempotency_key=idempotency_key,
        message=f"sync state of {state.key}",
        properties={"sync_key": state.key, "sync_state": state.value},
    )

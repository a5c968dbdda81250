"""Label Studio webhooks kept in arrival order in the project's `<project>__webhooks` dataset, applied in batches.

`labelhouse webhooks` hands every accepted webhook to Prefect as an event. A flow run per event caps a
project at about one applied webhook a second, so the webhook flow collects the events into this inbox
and commits many webhooks per change set:

- `collect` inserts the events not in the inbox yet under the next sequence numbers, in the order they
  occurred, as one commit; each row records the last sequence number of its commit (`collect_end`).
- `next_batch` is the run of webhooks after the last applied one that commits as one change set. It
  ends at its collect commit's end, after `MAX_BATCH` webhooks, before a webhook whose changes do not
  compose with the earlier ones' (`tasks.changes.compose`) and before one from a project with another
  labeling config. It depends only on where it starts, so a run that crashed before recording a batch
  as applied computes the same batch again, with the same idempotency key, and nothing lands twice.
- a batch commits like any other, followed by its sync state `label-studio:webhooks` (its last
  sequence number).

The inbox keeps every webhook (payload as JSON) after Prefect's event retention has dropped it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from storage import Catalog, Dataset, DatasetNotFoundError, PrimaryKeyConflictError

from ..changes import compose
from ..errors import SourceError
from .events import WebhookEvent
from .label_studio import webhook_batch
from .staging import BatchInfo, ParsedBatch, SyncState
from .sync_state import read_sync_state

INBOX_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),  # 1, 2, ... in the order webhooks were collected
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("occurred", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("action", pa.string()),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("collected_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("collect_end", pa.int64(), nullable=False),  # the last seq of the commit that collected it
    ]
)
SYNC_KEY = "label-studio:webhooks"
MAX_BATCH = 500  # webhooks per change set: a few MB of payloads, one commit per dataset
LOOKBACK = timedelta(minutes=10)  # how much older than the newest collected webhook a late one may be
COLLECT_ATTEMPTS = 20


def inbox_name(project: str) -> str:
    """The project's webhook inbox dataset."""
    return f"{project}__webhooks"


def inbox(catalog: Catalog, project: str) -> Dataset:
    """The project's webhook inbox, created empty if it does not exist."""
    return catalog.create_dataset(inbox_name(project), INBOX_SCHEMA, primary_keys=["seq"], exist_ok=True)


def collect_since(catalog: Catalog, project: str, retention: timedelta) -> datetime:
    """When the events worth reading start: `LOOKBACK` before the newest collected one, or `retention`
    ago (all Prefect still holds) for an empty inbox."""
    try:
        occurred = catalog.dataset(inbox_name(project)).read_all(columns=["occurred"])["occurred"]
    except DatasetNotFoundError:
        occurred = pa.chunked_array([], pa.timestamp("us", tz="UTC"))
    newest = pc.max(occurred).as_py()
    return newest - LOOKBACK if newest is not None else datetime.now(UTC) - retention


def collect(catalog: Catalog, project: str, events: Sequence[WebhookEvent]) -> int:
    """Add the events the inbox does not hold yet, oldest first, as one commit; returns how many.

    Collectors racing for the same sequence numbers conflict; the loser looks again.
    """
    dataset = inbox(catalog, project)
    candidates = {e.id: e for e in events}
    if not candidates:
        return 0
    for _ in range(COLLECT_ATTEMPTS):
        # One snapshot for both reads: a commit after it takes the seqs this insert would, so it conflicts.
        snapshot = dataset.snapshot().id
        held = dataset.read_all(pc.field("event_id").isin(list(candidates)), columns=["event_id"], version=snapshot)
        known = set(held["event_id"].to_pylist())
        new = sorted((e for e in candidates.values() if e.id not in known), key=lambda e: (e.occurred, e.id))
        if not new:
            return 0
        first = _last_seq(dataset, snapshot) + 1
        end = first + len(new) - 1
        now = datetime.now(UTC)
        rows = [
            {
                "seq": first + i,
                "event_id": e.id,
                "occurred": e.occurred,
                "action": e.payload.get("action"),
                "payload": json.dumps(e.payload, ensure_ascii=False),
                "collected_at": now,
                "collect_end": end,
            }
            for i, e in enumerate(new)
        ]
        try:
            dataset.insert(
                pa.Table.from_pylist(rows, schema=INBOX_SCHEMA),
                idempotency_key=f"collect:{_digest(e.id for e in new)}",
                message=f"collect webhooks {first}-{end}",
            )
        except PrimaryKeyConflictError:
            continue
        return len(new)
    raise SourceError(
        f"could not collect webhooks into {inbox_name(project)}: {COLLECT_ATTEMPTS} other collectors got there "
        "first; run fewer webhook flows at once (the deployment runs one at a time)"
    )


def applied_seq(catalog: Catalog, project: str) -> int:
    """The last webhook applied (0: none)."""
    state = read_sync_state(catalog, project, SYNC_KEY)
    return int(json.loads(state)["seq"]) if state is not None else 0


def holds(catalog: Catalog, project: str, event_id: str) -> bool:
    """Whether the webhook event `event_id` is collected."""
    try:
        found = catalog.dataset(inbox_name(project)).read_all(filter=pc.field("event_id") == event_id, columns=["seq"])
    except DatasetNotFoundError:
        return False
    return bool(found.num_rows > 0)


def pending(catalog: Catalog, project: str) -> int:
    """How many collected webhooks are not applied yet."""
    try:
        seqs = catalog.dataset(inbox_name(project)).read_all(columns=["seq"])["seq"]
    except DatasetNotFoundError:
        return 0
    last = pc.max(seqs).as_py()
    return max((last or 0) - applied_seq(catalog, project), 0)


@dataclass(frozen=True)
class InboxBatch:
    """Webhooks `first`..`last` of the inbox as one change set, or the reason they cannot be applied."""

    first: int
    last: int
    parsed: ParsedBatch | None
    problem: str | None = None

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def next_batch(catalog: Catalog, project: str, after: int, limit: int = MAX_BATCH) -> InboxBatch | None:
    """The batch that starts after webhook `after` (see the module docstring), or None if none is collected.

    `limit` below MAX_BATCH applies webhooks in smaller batches (1: one at a time).
    """
    try:
        dataset = catalog.dataset(inbox_name(project))
    except DatasetNotFoundError:
        return None
    window = (pc.field("seq") > after) & (pc.field("seq") <= after + limit)
    rows = dataset.read_all(filter=window, columns=["seq", "event_id", "payload", "collect_end"]).sort_by("seq")
    if rows.num_rows == 0:
        return None
    seqs = rows["seq"].to_pylist()
    if seqs[0] != after + 1:
        raise SourceError(
            f"{inbox_name(project)} has no webhook {after + 1} (next is {seqs[0]}); it was changed by hand. "
            f'Record the sync state {SYNC_KEY} as {{"seq": {seqs[0] - 1}}} to go on from there'
        )
    end = min(rows["collect_end"][0].as_py(), after + limit)
    payloads, ids = rows["payload"].to_pylist(), rows["event_id"].to_pylist()
    combined: ParsedBatch | None = None
    config: object = None
    last = after
    for seq, text in zip(seqs, payloads, strict=True):
        if seq > end:
            break
        payload = json.loads(text)
        try:
            parsed = webhook_batch(payload, flow_run_id=None)
        except Exception as exc:  # the receiver mapped it once; a later version refuses it
            if combined is not None:
                break
            return InboxBatch(seq, seq, None, f"webhook {seq} ({ids[0]}) cannot be mapped: {exc}")
        project_config = _label_config(payload)
        if combined is None:
            combined, config = parsed, project_config
        else:
            merged = compose(combined.changes, parsed.changes) if project_config == config else None
            if merged is None:
                break
            combined = ParsedBatch(merged, combined.info)
        last = seq
    assert combined is not None
    batch_ids = ids[: last - after]
    info = BatchInfo(
        source_ref=f"webhooks {after + 1}-{last} of {inbox_name(project)}",
        idempotency_key=f"label-studio:webhooks:{after + 1}-{last}:{_digest(batch_ids)}",
        class_map=combined.info.class_map,
        relation_labels=combined.info.relation_labels,
        sync_state=SyncState(SYNC_KEY, json.dumps({"seq": last})),
        properties={"webhook_seqs": f"{after + 1}-{last}"},
    )
    return InboxBatch(after + 1, last, ParsedBatch(combined.changes, info))


def _label_config(payload: dict[str, object]) -> object:
    project = payload.get("project")
    return project.get("label_config") if isinstance(project, dict) else None


def _last_seq(dataset: Dataset, version: int) -> int:
    last = pc.max(dataset.read_all(columns=["seq"], version=version)["seq"]).as_py()
    return int(last) if last is not None else 0


def _digest(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]

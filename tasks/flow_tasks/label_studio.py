"""Label Studio batches for the flows: an export file, a pull through the API, a webhook payload."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow.compute as pc

from checks import ClassMap
from storage import Catalog, DatasetNotFoundError
from storage.groundtruth import dataset_names

from ..errors import SourceError
from ..json_source import canonical_sha256
from ..label_studio import LabelingConfig, map_webhook, parse_export, parse_labeling_config
from ..label_studio.pull import TaskSource, Watermark, pull_changed_tasks
from ..label_studio.webhooks import SOURCE
from .staging import BatchInfo, ParsedBatch, SyncState
from .sync_state import read_sync_state


class ProjectTasks(TaskSource, Protocol):
    """What a pull needs from Label Studio: changed tasks, and every task id (to see deletions)."""

    base_url: str

    def list_task_ids(self, project_id: int, *, page_size: int = 1000) -> list[int]: ...


def read_config(path: str | os.PathLike[str] | None) -> LabelingConfig | None:
    """The labeling config in the XML file at `path` (None: no config)."""
    if path is None:
        return None
    return parse_labeling_config(Path(path).read_text(encoding="utf-8"), name=str(path))


def export_batch(path: str | os.PathLike[str], config: LabelingConfig | None, flow_run_id: str | None) -> ParsedBatch:
    """An export file of a whole project (JSON, snapshot or JSON_MIN, recognised from its content)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"no Label Studio export at {file}; check the path") from None
    parsed = parse_export(data, name=file.name, config=config, flow_run_id=flow_run_id)
    info = BatchInfo(f"{file.name} ({parsed.variant} export)", parsed.idempotency_key, *_labels(config))
    return ParsedBatch(parsed.changes, info)


def webhook_batch(payload: Any, flow_run_id: str | None) -> ParsedBatch:
    """A webhook payload's upserts and deletes; labels are checked against the payload project's config.

    The batch is keyed by the payload's content: the same webhook delivered twice (Label Studio sends
    once, but a proxy or a resend may repeat it) commits once, and a late repeat cannot undo a newer change.
    """
    project = payload.get("project") if isinstance(payload, dict) else None
    xml = project.get("label_config") if isinstance(project, dict) else None
    config = parse_labeling_config(xml, name="webhook project label_config") if isinstance(xml, str) and xml else None
    changes = map_webhook(payload, config=config, flow_run_id=flow_run_id)
    key = f"{SOURCE}:webhook:{canonical_sha256(payload)}"
    return ParsedBatch(changes, BatchInfo(f"webhook {payload['action']}", key, *_labels(config)))


def pull_batch(
    client: ProjectTasks,
    catalog: Catalog,
    project: str,
    project_id: int,
    *,
    config: LabelingConfig | None,
    flow_run_id: str | None,
    page_size: int = 100,
) -> ParsedBatch:
    """Tasks of Label Studio project `project_id` changed since the last committed pull, and the items of
    tasks deleted since; the new watermark rides along as the batch's sync state."""
    state_key = f"{SOURCE}:{client.base_url}/projects/{project_id}"
    previous = read_sync_state(catalog, project, state_key)
    watermark = Watermark.from_json(previous) if previous else None
    tasks, next_watermark = pull_changed_tasks(client, project_id, watermark, page_size=page_size)
    name = f"{client.base_url}/api/projects/{project_id}/export"
    parsed = parse_export(json.dumps(tasks), name=name, config=config, flow_run_id=flow_run_id, whole_project=False)
    deleted = _deleted_items(catalog, project, set(client.list_task_ids(project_id)))
    info = BatchInfo(
        f"pull of {len(tasks)} changed tasks from {name}",
        None,
        *_labels(config),
        sync_state=SyncState(state_key, next_watermark.to_json()),
    )
    return ParsedBatch(replace(parsed.changes, deleted_items=tuple(deleted)), info)


def _labels(config: LabelingConfig | None) -> tuple[ClassMap | None, tuple[str, ...] | None]:
    """The class map and relation labels the checks use, from a labeling config."""
    return (config.class_map, config.relation_labels) if config else (None, None)


def _deleted_items(catalog: Catalog, project: str, live_task_ids: set[int]) -> list[str]:
    """Label Studio items the project holds whose task no longer exists (one Label Studio project is
    assumed to feed a Labelhouse project: items of other Label Studio projects would look deleted)."""
    try:
        items = catalog.dataset(dataset_names(project)["items"])
    except DatasetNotFoundError:
        return []
    held = items.read_all(filter=pc.field("source") == SOURCE, columns=["id", "source_id"]).to_pylist()
    return [row["id"] for row in held if int(row["source_id"]) not in live_task_ids]

"""A Label Studio task with its submissions, as canonical rows (one item, its annotations, predictions)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.groundtruth import item_id

from ..changes import ChangeSet, canonical_table
from ..json_node import Node
from ..provenance import Provenance
from .config import LabelingConfig
from .items import item_media, text_lookup
from .submissions import Submission, read_annotation, read_draft, read_prediction, submission_rows


@dataclass(frozen=True)
class TaskSource:
    """What one task contributes, whichever shape (export, JSON_MIN rows, webhook) it came in."""

    task_id: str
    node: Node  # where the item's raw record sits
    raw: str  # verbatim JSON text of the item's source record(s)
    data: dict[str, Any]
    meta: Any
    created_at: datetime | None
    updated_at: datetime | None
    submissions: list[Submission] = field(default_factory=list)  # annotations and drafts
    predictions: list[Submission] = field(default_factory=list)


@dataclass
class Rows:
    """Canonical row dicts per table, accumulated over tasks."""

    items: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def changes(self) -> ChangeSet:
        """The rows as a change set that upserts them and deletes nothing (set scopes with `replace`)."""
        return ChangeSet(
            items=canonical_table("items", self.items),
            annotations=canonical_table("annotations", self.annotations),
            predictions=canonical_table("predictions", self.predictions),
        )


def rows_of_tasks(tasks: list[TaskSource], provenance: Provenance, config: LabelingConfig | None) -> Rows:
    """The canonical rows of `tasks`."""
    rows = Rows()
    for task in tasks:
        _add_task_rows(rows, task, provenance, config)
    return rows


def task_id_of(node: Node) -> str:
    """The task's id; every Label Studio task has one."""
    task = node.child("id").as_id()
    if task is None:
        raise node.error("a task without an 'id'; this is not a Label Studio export, or the task was edited")
    return task


def read_task(node: Node, annotations: list[Node] | None = None) -> TaskSource:
    """A task object from a JSON or snapshot export (or a webhook, with its `annotations` given apart)."""
    if not isinstance(node.value, dict):
        raise node.expect("a task object")
    task = task_id_of(node)
    node = node.described(f"{node.where}, task {task}")
    annotation_nodes = node.child("annotations").items() if annotations is None else annotations
    submissions = [read_annotation(n.described(node.where), i) for i, n in enumerate(annotation_nodes)]
    submissions += [read_draft(n, i) for i, n in enumerate(node.child("drafts").items())]
    return TaskSource(
        task_id=task,
        node=node,
        raw=json.dumps(node.value, ensure_ascii=False),
        data=node.child("data").as_dict() or {},
        meta=node.child("meta").value,
        created_at=node.child("created_at").as_timestamp(),
        updated_at=node.child("updated_at").as_timestamp(),
        submissions=submissions,
        predictions=_predictions(node.child("predictions"), annotation_nodes),
    )


def _predictions(listed: Node, annotations: list[Node]) -> list[Submission]:
    """The task's predictions: objects (snapshot export), or ids resolved through the prediction an
    annotation embeds (JSON export); with no list at all (webhooks), every embedded prediction."""
    found: dict[str, Submission] = {}
    wanted: set[str] = set()
    for position, entry in enumerate(listed.items()):
        if isinstance(entry.value, dict):
            prediction = read_prediction(entry, position)
            found.setdefault(prediction.submission_id, prediction)
        elif (prediction_id := entry.as_id()) is not None:
            wanted.add(f"prediction:{prediction_id}")
    for position, annotation in enumerate(annotations):
        embedded = annotation.child("prediction")
        if not embedded.as_dict():  # Label Studio writes {} when the annotation did not start from one
            continue
        prediction = read_prediction(embedded, position)
        if listed.is_null() or prediction.submission_id in wanted:
            found.setdefault(prediction.submission_id, prediction)
    return list(found.values())


def _add_task_rows(rows: Rows, source: TaskSource, provenance: Provenance, config: LabelingConfig | None) -> None:
    """Append the rows of one task to `rows`."""
    item = item_id(provenance.source, source.task_id)
    texts = text_lookup(source.data, config)

    def text_of(object_name: str | None) -> str | None:
        return texts.get(object_name or "")

    def rows_of(submissions: list[Submission]) -> list[dict[str, Any]]:
        return [row for s in submissions for row in submission_rows(s, item, text_of, provenance)]

    annotations, predictions = rows_of(source.submissions), rows_of(source.predictions)
    sized = next((r for r in [*annotations, *predictions] if r.get("image_width") and r.get("image_height")), None)
    media = item_media(source.data, config)
    rows.items.append(
        {
            "id": item,
            "source_id": source.task_id,
            "media_type": media.media_type,
            "uri": media.uri,
            "width": sized["image_width"] if sized else None,
            "height": sized["image_height"] if sized else None,
            "data": json.dumps(source.data, ensure_ascii=False),
            "metadata": None if source.meta is None else json.dumps(source.meta, ensure_ascii=False),
            "attachments": media.attachments,
            "created_at": source.created_at,
            "updated_at": source.updated_at,
            "blob": None,
            **provenance.columns(source.raw, source.node.pointer),
        }
    )
    rows.annotations.extend(annotations)
    rows.predictions.extend(predictions)

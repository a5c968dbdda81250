"""Label Studio webhook payloads as canonical change sets (rows to upsert, scopes to delete)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from storage.groundtruth import item_id

from ..changes import ChangeSet
from ..json_node import Node
from ..json_source import check_depth, check_unicode
from ..provenance import Provenance
from .config import LabelingConfig, parse_labeling_config
from .submissions import submission_id
from .task_rows import Rows, read_task, rows_of_tasks, task_id_of

SOURCE = "label-studio"


def map_webhook(
    payload: Any,
    *,
    config: LabelingConfig | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
) -> ChangeSet:
    """The changes a webhook payload (parsed JSON) announces.

    ANNOTATION_CREATED / ANNOTATION_UPDATED upsert the task and the annotation's rows and replace the
    annotation's earlier rows; ANNOTATIONS_DELETED removes annotations; TASKS_CREATED upserts tasks;
    TASKS_DELETED removes tasks with their annotations and predictions. Other actions change nothing.
    Without `config`, the project's labeling config in the payload is used.
    """
    root = Node.root(payload, "webhook payload")
    if not isinstance(payload, dict):
        raise root.expect("a webhook payload object")
    check_depth(payload, root.where)
    check_unicode(payload, root.where)
    action = root.child("action").as_str()
    if action is None:
        raise root.error("no 'action'; this is not a Label Studio webhook payload")
    root = root.described(f"webhook {action}")
    if config is None and (xml := root.child("project").child("label_config").as_str()):
        config = parse_labeling_config(xml, name=f"webhook {action} project label_config")
    provenance = Provenance(source=source, source_ref=f"webhook:{action}", flow_run_id=flow_run_id)
    if action in {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}:
        annotation = root.child("annotation")
        task = read_task(root.child("task"), annotations=[annotation])
        replaced = submission_id("annotation", annotation.child("id"), 0)
        return replace(rows_of_tasks([task], provenance, config).changes(), replaced_submissions=(replaced,))
    if action == "ANNOTATIONS_DELETED":
        deleted = [submission_id("annotation", a.child("id"), i) for i, a in enumerate(_entries(root, "annotations"))]
        return replace(Rows().changes(), replaced_submissions=tuple(deleted))
    if action == "TASKS_CREATED":
        return rows_of_tasks([read_task(t) for t in _entries(root, "tasks")], provenance, config).changes()
    if action == "TASKS_DELETED":
        deleted = [item_id(source, task_id_of(t)) for t in _entries(root, "tasks")]
        return replace(Rows().changes(), deleted_items=tuple(deleted))
    return Rows().changes()


def _entries(root: Node, key: str) -> list[Node]:
    entries = root.child(key).items()
    for entry in entries:
        if not isinstance(entry.value, dict):
            raise entry.expect("an object with an 'id'")
    return entries

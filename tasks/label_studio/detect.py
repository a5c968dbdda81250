"""Which Label Studio export a JSON document is, recognised from its content alone."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ..errors import UnrecognizedSourceError
from ..json_source import JsonDocument


class ExportVariant(StrEnum):
    JSON = "json"  # the easy export: predictions as ids, `completed_by` as a user id
    SNAPSHOT = "snapshot"  # the snapshot export: the same tasks with predictions and users as objects
    JSON_MIN = "json_min"  # one flat row per annotation


_HINTS = {
    "action": "it looks like a Label Studio webhook payload: hand it to the webhook mapping instead",
    "images": "it looks like a COCO file: ingest it with the COCO source",
    "label_config": "it looks like a project description, not an export",
}


def detect_variant(doc: JsonDocument) -> ExportVariant:
    """The export variant of `doc`; raise UnrecognizedSourceError if it is no Label Studio export."""
    tasks = doc.value
    if not isinstance(tasks, list):
        raise UnrecognizedSourceError(f"{doc.name}: {_not_an_export(tasks)}")
    task_shaped = None
    for index, task in enumerate(tasks):
        if not isinstance(task, dict) or "id" not in task:
            shown = "an object without 'id'" if isinstance(task, dict) else f"a {_json_type(task)}"
            raise UnrecognizedSourceError(
                f"{doc.name}: element {index} is {shown}; a Label Studio export is an array of tasks "
                "(objects with 'id' and 'data') or of JSON_MIN rows (objects with 'id'). Export the "
                "project again (JSON, JSON_MIN or a snapshot)"
            )
        shaped = "data" in task or "annotations" in task
        if task_shaped is not None and shaped != task_shaped:
            raise UnrecognizedSourceError(
                f"{doc.name}: element {index} (task {task['id']!r}) mixes export formats: earlier elements "
                f"are {'full tasks' if task_shaped else 'JSON_MIN rows'}; ingest each export file on its own"
            )
        task_shaped = shaped
    if task_shaped is False:
        return ExportVariant.JSON_MIN
    return ExportVariant.SNAPSHOT if any(_has_objects(task) for task in tasks) else ExportVariant.JSON


def _has_objects(task: dict[str, Any]) -> bool:
    annotations, predictions = task.get("annotations"), task.get("predictions")
    users = [a.get("completed_by") for a in annotations if isinstance(a, dict)] if isinstance(annotations, list) else []
    listed = predictions if isinstance(predictions, list) else []
    return any(isinstance(entry, dict) for entry in [*users, *listed])


def _not_an_export(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:8])
        hint = next((h for key, h in _HINTS.items() if key in value), "")
        return f"a JSON object (keys: {keys}), but a Label Studio export is a JSON array of tasks" + (
            f"; {hint}" if hint else ""
        )
    return f"a JSON {_json_type(value)}, but a Label Studio export is a JSON array of tasks"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "null"

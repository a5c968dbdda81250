"""Label Studio's JSON_MIN export: one flat row per submitted annotation, one column per control.

A row mixes task data columns with control columns, and only the labeling config tells them apart, so
it is required. Each control column is rewritten into the result objects the other exports carry, then
handled like them; `raw` keeps the verbatim JSON_MIN fragments.
"""

from __future__ import annotations

import json
from typing import Any

from ..json_node import Node
from .config import Control, LabelingConfig
from .results import SourceResult
from .submissions import Submission, submission_id
from .task_rows import TaskSource, task_id_of

_ANNOTATION_COLUMNS = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"})
_VALUE_KEY = {"choices": "choices", "textarea": "text"}  # else the result type names the value key
_SIZE_KEYS = ("original_width", "original_height")


def read_json_min(root: Node, config: LabelingConfig) -> list[TaskSource]:
    """The tasks of a JSON_MIN export, in order of first appearance."""
    rows_by_task: dict[str, list[Node]] = {}
    for row in root.items():
        if not isinstance(row.value, dict):
            raise row.expect("a JSON_MIN row (an object)")
        task = task_id_of(row)
        rows_by_task.setdefault(task, []).append(row.described(f"{row.where}, task {task}"))
    return [_task(task, rows, config) for task, rows in rows_by_task.items()]


def _task(task: str, rows: list[Node], config: LabelingConfig) -> TaskSource:
    first = rows[0]
    return TaskSource(
        task_id=task,
        node=first,
        raw=json.dumps([row.value for row in rows], ensure_ascii=False),
        data={k: v for k, v in first.value.items() if k not in _ANNOTATION_COLUMNS and k not in config.controls},
        meta=None,
        created_at=None,  # JSON_MIN carries the annotation's timestamps only
        updated_at=None,
        submissions=[_submission(row, position, config) for position, row in enumerate(rows)],
    )


def _submission(row: Node, position: int, config: LabelingConfig) -> Submission:
    results: list[SourceResult] = []
    for column in row.value:
        control = config.controls.get(column)
        if control is None:
            continue
        for fragment in _fragments(row.child(column)):
            result = Node(_as_result(fragment, control), fragment.pointer, fragment.where)
            results.append(SourceResult(node=result, raw=fragment.value, position=len(results)))
    return Submission(
        submission_id=submission_id("annotation", row.child("annotation_id"), position),
        node=row,
        status="submitted",  # JSON_MIN leaves cancelled annotations out
        annotator=row.child("annotator").as_id(),
        annotator_email=None,
        created_at=row.child("created_at").as_timestamp(),
        updated_at=row.child("updated_at").as_timestamp(),
        lead_time_s=row.child("lead_time").as_float(),
        results=results,
    )


def _fragments(column: Node) -> list[Node]:
    """Regions come as an array of objects, one per region; anything else is one classification value."""
    if isinstance(column.value, list) and column.value and all(isinstance(v, dict) for v in column.value):
        return column.items()
    return [] if column.is_null() else [column]


def _as_result(fragment: Node, control: Control) -> dict[str, Any]:
    result: dict[str, Any] = {
        "from_name": control.name,
        "to_name": control.to_name[0] if control.to_name else None,
        "type": control.result_type,
    }
    if isinstance(fragment.value, dict):
        result.update({key: fragment.value.get(key) for key in _SIZE_KEYS})
        result["value"] = {k: v for k, v in fragment.value.items() if k not in _SIZE_KEYS}
    else:
        result["value"] = {_VALUE_KEY.get(control.result_type, control.result_type): fragment.value}
    return result

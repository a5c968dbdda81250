"""Pull the tasks of a Label Studio project that changed since a watermark: no skips, no repeats.

What a change is. Label Studio stamps a task's `updated_at` whenever the task, or one of its annotations
or predictions, is created, changed or deleted (Annotation/Prediction save() and delete() call
update_task()). So the tasks whose `updated_at` moved are the change set, and a re-read task carries its
current annotations: an annotation deleted in Label Studio is simply absent from it, and the caller
replaces the task's annotations. Drafts do not stamp the task; they show up with the next real change.

Deleted tasks leave nothing to list. Call `LabelStudioClient.list_task_ids` after the pull: items the
dataset holds that are missing from it were deleted. Webhooks (TASKS_DELETED) are faster but Label
Studio sends each one once, without retries, so the id listing stays the reference.

Reading. The task list orders by `updated_at` only, ties in no defined order, and pages by page
number, which skips a task whenever another one moves between two requests. So each request is page 1
of "updated_at >= boundary", the boundary being the last timestamp of the previous page. When a whole
page shares one timestamp (a bulk action stamps many tasks alike), that group is read separately,
ordered by id and paged by "id > last id".

The watermark. `since`: every task version updated before it has been returned. `seen`: the versions
(id -> updated_at) at or after `since` that have been returned. The next pull re-reads from `since`
inclusive and skips the versions in `seen`, so tasks sharing the boundary timestamp are neither lost
nor repeated. `since` trails the newest `updated_at` listed by `overlap`: a write whose timestamp was
taken before a pull but committed after it (a lock wait, servers with skewed clocks) falls inside the
re-read window and is still returned, while `seen` keeps the window from repeating anything.
Store `Watermark.to_json()` in the same commit as the rows (commit properties): a crash before the
commit re-pulls from the old watermark and loses nothing; once committed, nothing is pulled twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..errors import SourceError, SourceFormatError
from ..watermarks import decode_watermark, encode_watermark, iso, trailing_since
from .api import JSON, TaskVersion, parse_timestamp

DEFAULT_OVERLAP = timedelta(seconds=10)


class TaskSource(Protocol):
    """What a pull needs from Label Studio; `LabelStudioClient` is one."""

    def list_task_versions(
        self, project_id: int, *, since: datetime | None, inclusive: bool, limit: int
    ) -> list[TaskVersion]: ...

    def list_task_versions_at(
        self, project_id: int, *, updated_at: datetime, after_id: int, limit: int
    ) -> list[TaskVersion]: ...

    def export_tasks(self, project_id: int, task_ids: Iterable[int]) -> list[JSON]: ...


@dataclass(frozen=True)
class Watermark:
    """How far the pulls of one project got; see the module docstring. Serialize with `to_json()`."""

    project_id: int
    since: datetime | None = None
    seen: Mapping[int, datetime] = field(default_factory=dict)

    def to_json(self) -> str:
        """A compact JSON string, e.g. for a commit's properties."""
        return encode_watermark(
            {
                "project_id": self.project_id,
                "since": iso(self.since) if self.since is not None else None,
                "seen": {str(i): iso(t) for i, t in sorted(self.seen.items())},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Watermark:
        """Parse `to_json()` output; SourceFormatError if it is something else."""

        def build(value: dict[str, Any]) -> Watermark:
            since = value["since"]
            return cls(
                project_id=int(value["project_id"]),
                since=parse_timestamp(since) if since is not None else None,
                seen={int(i): parse_timestamp(t) for i, t in value["seen"].items()},
            )

        return decode_watermark(
            text,
            build,
            what="a Label Studio pull watermark",
            fix="pass the string a previous pull's Watermark.to_json() produced, or no watermark to pull everything",
        )


def pull_changed_tasks(
    client: TaskSource,
    project_id: int,
    watermark: Watermark | None = None,
    *,
    page_size: int = 100,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> tuple[list[JSON], Watermark]:
    """Tasks changed since `watermark` (all tasks when None) in JSON-export shape, and the next watermark.

    Tasks come ordered by `updated_at`, then id, each once in its latest version.
    """
    if watermark is not None and watermark.project_id != project_id:
        raise SourceError(
            f"the watermark belongs to Label Studio project {watermark.project_id}, not {project_id}; "
            f"pass the watermark stored for project {project_id}"
        )
    previous = watermark or Watermark(project_id)
    listed = _list_changes(client, project_id, previous.since, page_size)
    changed = sorted(
        (v for v in listed.values() if previous.seen.get(v.id) != v.updated_at),
        key=lambda v: (v.updated_at, v.id),
    )
    order = {v.id: position for position, v in enumerate(changed)}
    ids = list(order)
    tasks: list[JSON] = []
    for start in range(0, len(ids), page_size):
        tasks.extend(client.export_tasks(project_id, ids[start : start + page_size]))
    tasks.sort(key=lambda task: order[_task_version(task).id])

    versions = {v.id: v.updated_at for v in listed.values()}
    for task in tasks:
        # A task changed again between listing and export comes back newer: remember the version
        # returned, so the next pull does not return it again.
        returned = _task_version(task)
        versions[returned.id] = max(versions[returned.id], returned.updated_at)
    since = previous.since
    if listed:
        since = trailing_since(since, max(v.updated_at for v in listed.values()), overlap)
    seen = {i: t for i, t in versions.items() if since is None or t >= since}
    return tasks, Watermark(project_id, since, seen)


def _list_changes(
    client: TaskSource, project_id: int, since: datetime | None, page_size: int
) -> dict[int, TaskVersion]:
    listed: dict[int, TaskVersion] = {}

    def note(versions: list[TaskVersion]) -> None:
        for v in versions:
            if v.id not in listed or v.updated_at > listed[v.id].updated_at:
                listed[v.id] = v

    page = client.list_task_versions(project_id, since=since, inclusive=True, limit=page_size)
    while True:
        note(page)
        if len(page) < page_size:
            return listed
        # Every task stamped before the page's last timestamp is in this page or an earlier one; tasks
        # at that timestamp may continue on the next page, so it starts there again.
        boundary = page[-1].updated_at
        if page[0].updated_at != boundary:
            page = client.list_task_versions(project_id, since=boundary, inclusive=True, limit=page_size)
            continue
        # The whole page is one timestamp, and more tasks may share it than a page holds.
        after_id = 0
        while True:
            group = client.list_task_versions_at(project_id, updated_at=boundary, after_id=after_id, limit=page_size)
            note(group)
            if len(group) < page_size:
                break
            after_id = group[-1].id
        page = client.list_task_versions(project_id, since=boundary, inclusive=False, limit=page_size)


def _task_version(task: Any) -> TaskVersion:
    try:
        return TaskVersion(int(task["id"]), parse_timestamp(task["updated_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceFormatError(
            f"a task from the Label Studio export lacks a valid id or updated_at ({exc}): {str(task)[:200]}"
        ) from None

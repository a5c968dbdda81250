"""The watermark logic of the Label Studio pull, against an in-memory task list (no server)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.errors import SourceError, SourceFormatError
from tasks.label_studio.api import TaskVersion
from tasks.label_studio.pull import Watermark, pull_changed_tasks

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeLabelStudio:
    """Tasks as id -> updated_at, listed like the Data Manager: ties in random order, page 1 only."""

    def __init__(self, versions: dict[int, datetime]) -> None:
        self.versions = dict(versions)
        self.before_export: Callable[[], None] = lambda: None
        self._shuffle = random.Random(7).shuffle

    def list_task_versions(
        self, project_id: int, *, since: datetime | None, inclusive: bool, limit: int
    ) -> list[TaskVersion]:
        rows = [
            TaskVersion(i, t)
            for i, t in self.versions.items()
            if since is None or t > since or (inclusive and t == since)
        ]
        self._shuffle(rows)
        return sorted(rows, key=lambda v: v.updated_at)[:limit]  # sorted() is stable: ties stay shuffled

    def list_task_versions_at(
        self, project_id: int, *, updated_at: datetime, after_id: int, limit: int
    ) -> list[TaskVersion]:
        rows = sorted(i for i, t in self.versions.items() if t == updated_at and i > after_id)
        return [TaskVersion(i, updated_at) for i in rows[:limit]]

    def export_tasks(self, project_id: int, task_ids: Iterable[int]) -> list[dict[str, Any]]:
        self.before_export()
        return [
            {"id": i, "updated_at": self.versions[i].isoformat().replace("+00:00", "Z")}
            for i in task_ids
            if i in self.versions
        ]


def ids(tasks: list[dict[str, Any]]) -> list[int]:
    return [t["id"] for t in tasks]


def test_a_large_tie_group_is_read_whole_and_once() -> None:
    source = FakeLabelStudio({i: at(5) for i in range(1, 8)} | {8: at(1), 9: at(9)})
    tasks, watermark = pull_changed_tasks(source, 1, page_size=2)
    assert ids(tasks) == [8, 1, 2, 3, 4, 5, 6, 7, 9]
    assert pull_changed_tasks(source, 1, watermark, page_size=2)[0] == []

    source.versions.update({i: at(20) for i in (2, 4, 6, 8, 9)})
    tasks, watermark = pull_changed_tasks(source, 1, watermark, page_size=2)
    assert ids(tasks) == [2, 4, 6, 8, 9]
    assert pull_changed_tasks(source, 1, watermark, page_size=2)[0] == []


def test_a_late_commit_inside_the_overlap_is_still_pulled() -> None:
    source = FakeLabelStudio({1: at(10)})
    _, watermark = pull_changed_tasks(source, 1, overlap=timedelta(seconds=5))
    source.versions[2] = at(7)  # stamped before the pull, committed after it
    tasks, watermark = pull_changed_tasks(source, 1, watermark, overlap=timedelta(seconds=5))
    assert ids(tasks) == [2]
    assert pull_changed_tasks(source, 1, watermark, overlap=timedelta(seconds=5))[0] == []


def test_a_task_changed_during_the_pull_is_not_returned_twice() -> None:
    source = FakeLabelStudio({1: at(1), 2: at(2)})

    def touch() -> None:
        source.versions[1] = at(3)
        source.before_export = lambda: None

    source.before_export = touch
    tasks, watermark = pull_changed_tasks(source, 1, overlap=timedelta(0))
    assert [(t["id"], t["updated_at"]) for t in tasks] == [(1, "2026-01-01T00:00:03Z"), (2, "2026-01-01T00:00:02Z")]
    assert pull_changed_tasks(source, 1, watermark, overlap=timedelta(0))[0] == []


def test_the_watermark_round_trips_and_bad_ones_are_refused() -> None:
    source = FakeLabelStudio({1: at(1), 2: at(2)})
    _, watermark = pull_changed_tasks(source, 3)
    assert Watermark.from_json(watermark.to_json()) == watermark
    with pytest.raises(SourceFormatError, match="not a Label Studio pull watermark"):
        Watermark.from_json('{"format": 1, "since": "yesterday"}')
    with pytest.raises(SourceError, match="belongs to Label Studio project 3, not 4"):
        pull_changed_tasks(source, 4, watermark)

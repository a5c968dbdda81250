"""Ancestry of snapshots: parent chains (plus merge parents) and common ancestors."""

from __future__ import annotations

from .context import DatasetContext
from .log import LogEntry

MERGE_PARENT = "merge_parent"


def parents(entry: LogEntry) -> list[int]:
    """First parent, then the merged-in source snapshot of a merge commit."""
    out = [] if entry.parent_id is None else [entry.parent_id]
    merged = entry.summary.get(MERGE_PARENT)
    if isinstance(merged, int):
        out.append(merged)
    return out


def ancestors(ctx: DatasetContext, entry: LogEntry) -> set[int]:
    """Ids of `entry` and every live snapshot it descends from."""
    seen: set[int] = set()
    todo = [entry.snapshot_id]
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        try:
            todo.extend(parents(ctx.log.get(sid)))
        except LookupError:  # expired: its ancestors are unknown
            continue
    return seen


def common_ancestor(ctx: DatasetContext, a: LogEntry, b: LogEntry) -> LogEntry | None:
    """The newest snapshot both descend from (ids grow with time, so the largest common id)."""
    common = ancestors(ctx, a) & ancestors(ctx, b)
    for sid in sorted(common, reverse=True):
        try:
            return ctx.log.get(sid)
        except LookupError:
            continue
    return None


def first_parent_path(ctx: DatasetContext, ancestor: LogEntry, entry: LogEntry) -> list[LogEntry] | None:
    """Entries after `ancestor` up to `entry` along first parents, oldest first; None if not reachable."""
    path: list[LogEntry] = []
    current: LogEntry | None = entry
    while current is not None and current.snapshot_id != ancestor.snapshot_id:
        path.append(current)
        if current.parent_id is None or current.parent_id < ancestor.snapshot_id:
            return None
        try:
            current = ctx.log.get(current.parent_id)
        except LookupError:
            return None
    return list(reversed(path)) if current is not None else None

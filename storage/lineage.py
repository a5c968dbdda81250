"""Ancestry of snapshots: parent chains (plus merge parents), common ancestors, and the change logs that
describe a chain (one per commit, or roll-ups of many)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from .context import DatasetContext
from .log import LogEntry

MERGE_PARENT = "merge_parent"
# Summary key of a commit that also stored roll-ups: {level: change log path}, each the net change of its
# first-parent commits with ids in (id - level, id] (storage/rollups.py writes them).
ROLLUPS = "rollups"


def parents(entry: LogEntry) -> list[int]:
    """First parent, then the merged-in source snapshot of a merge commit."""
    out = [] if entry.parent_id is None else [entry.parent_id]
    merged = entry.summary.get(MERGE_PARENT)
    if isinstance(merged, int):
        out.append(merged)
    return out


def common_ancestor(ctx: DatasetContext, a: LogEntry, b: LogEntry) -> LogEntry | None:
    """The newest live snapshot both descend from.

    Ids grow with time, so both ancestries are walked together, newest id first: the first id reached from
    both sides is the answer, and only snapshots newer than it are read (a diff of the last few commits of
    a long history does not walk all of it). An expired snapshot ends its line: its ancestors are unknown.
    """
    heap = [(-a.snapshot_id, 1), (-b.snapshot_id, 2)]
    reached: dict[int, int] = {}  # id -> which sides (1, 2 or both) reach it
    while heap:
        negative, side = heapq.heappop(heap)
        sid = -negative
        sides = reached.get(sid, 0)
        if sides | side == sides:
            continue
        reached[sid] = sides | side
        try:
            entry = ctx.log.get(sid)
        except LookupError:
            continue
        if reached[sid] == 3:
            return entry
        for parent in parents(entry):
            heapq.heappush(heap, (-parent, side))
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


def logs_along(path: Sequence[LogEntry], use_rollups: bool = True) -> list[str]:
    """Change logs whose composition, oldest first, is the net change along `path` (first-parent entries,
    oldest first, as first_parent_path() returns them).

    From the newest entry back, each step takes the widest roll-up the entry stored that ends inside the
    path, else the entry's own log: a path of n commits needs at most about 9 logs per roll-up level plus
    n / (widest level), instead of n.
    """
    out: list[str] = []
    floor = path[0].parent_id if path else None
    i = len(path) - 1
    while i >= 0:
        entry = path[i]
        widest = _widest_rollup(entry, floor) if use_rollups else None
        if widest is None:
            if entry.changes:
                out.append(entry.changes)
            i -= 1
            continue
        level, log = widest
        out.append(log)
        while i >= 0 and path[i].snapshot_id > entry.snapshot_id - level:
            i -= 1
    return out[::-1]


def _widest_rollup(entry: LogEntry, floor: int | None) -> tuple[int, str] | None:
    """The widest roll-up of `entry` whose commits all come after snapshot `floor`."""
    stored = entry.summary.get(ROLLUPS)
    if not isinstance(stored, dict) or floor is None:
        return None
    fitting = [(int(level), str(log)) for level, log in stored.items() if entry.snapshot_id - int(level) >= floor]
    return max(fitting) if fitting else None

"""common_ancestor() against the definition: the newest live id in both snapshots' ancestor sets."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from _model import reachable
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.lineage import MERGE_PARENT, common_ancestor, parents
from storage.log import LogEntry


class _Log:
    def __init__(self, entries: dict[int, LogEntry]) -> None:
        self.entries = entries
        self.reads = 0

    def get(self, sid: int) -> LogEntry:
        self.reads += 1
        if sid not in self.entries:
            raise LookupError(sid)
        return self.entries[sid]


def _entry(sid: int, parent: int | None, merged: int | None) -> LogEntry:
    summary: dict[str, Any] = {} if merged is None else {MERGE_PARENT: merged}
    return LogEntry(sid, parent, "main", datetime.now(UTC), "append", f"c{sid}", summary=summary)


@st.composite
def _histories(draw: st.DrawFn) -> tuple[dict[int, LogEntry], int, int]:
    """A history of up to 30 snapshots (each with an older parent, some merging an older one in), some
    expired, and two live snapshots of it."""
    n = draw(st.integers(2, 30))
    entries = {0: _entry(0, None, None)}
    for sid in range(1, n):
        parent = draw(st.integers(0, sid - 1))
        merged = draw(st.none() | st.integers(0, sid - 1))
        entries[sid] = _entry(sid, parent, merged)
    for sid in draw(st.sets(st.integers(0, n - 1), max_size=n // 3)):  # fewer than n: some stay live
        del entries[sid]
    live = sorted(entries)
    return entries, draw(st.sampled_from(live)), draw(st.sampled_from(live))


def _ancestors(log: _Log, sid: int) -> set[int]:
    return reachable(sid, lambda s: parents(log.entries[s]) if s in log.entries else [])


@settings(max_examples=300, deadline=None)
@given(_histories())
def test_common_ancestor_is_the_newest_live_shared_ancestor(history: tuple[dict[int, LogEntry], int, int]) -> None:
    entries, a, b = history
    log = _Log(entries)
    ctx: Any = SimpleNamespace(log=log)
    shared = [s for s in _ancestors(log, a) & _ancestors(log, b) if s in entries]
    found = common_ancestor(ctx, entries[a], entries[b])
    assert (found.snapshot_id if found else None) == (max(shared) if shared else None)


def test_common_ancestor_of_a_recent_range_reads_only_the_range() -> None:
    entries = {sid: _entry(sid, sid - 1 if sid else None, None) for sid in range(10_000)}
    log = _Log(entries)
    found = common_ancestor(SimpleNamespace(log=log), entries[9_990], entries[9_999])  # type: ignore[arg-type]
    assert found is not None and found.snapshot_id == 9_990
    assert log.reads <= 12

"""Roll-ups of change logs: one log holding the net change of 10, 100 or 1,000 consecutive commits.

A diff over n commits otherwise loads and composes n change logs, and each costs a file read and per-log
work however few rows it holds (a dataset fed by webhooks commits a few rows at a time). A commit whose
snapshot id is a multiple of a level also stores the net change of the commits along its first parents
with ids in (id - level, id], in change-log form, so lineage.logs_along() takes one log for all of them.
Ids are global to the dataset, so a branch with few commits in that range rolls up fewer.

Roll-ups are written with the commit's other files, before its log entry, and named in its summary: the
entry says which exist (nothing to list or probe), a commit that does not land leaves only files vacuum()
removes, and vacuum() keeps a roll-up while its entry is live.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import bits
from . import changes as ch
from .changeset import FROM_FILE, FROM_POS, FROM_REF, MOVE_ONLY, TO_FILE, TO_POS, TO_REF, compose, pool_type
from .context import DatasetContext
from .lineage import ROLLUPS, logs_along
from .log import LogEntry

LEVELS = (10, 100, 1000)
# Change rows, and stored bytes of change logs, one roll-up may compose. Beyond that the commit writing it
# would hold too much in memory (row images of wide rows are large), and the logs are large enough that what
# each costs beyond its rows no longer matters.
MAX_ROWS = 500_000
MAX_BYTES = 64 << 20
_COUNTS = ("rows_inserted", "rows_updated", "rows_deleted", "rows_rewritten")
_KINDS = pa.array([ch.INSERT, ch.UPDATE, ch.DELETE, ch.MOVE])


def paths(entry: LogEntry) -> list[str]:
    """The roll-up logs `entry` stored."""
    stored = entry.summary.get(ROLLUPS)
    return [str(p) for p in stored.values()] if isinstance(stored, dict) else []


def due(snapshot_id: int) -> bool:
    """Whether the commit that becomes `snapshot_id` stores roll-ups (when its window allows)."""
    return any(snapshot_id % level == 0 for level in LEVELS)


def build(
    ctx: DatasetContext, parent: LogEntry, own: pa.Table | None, snapshot_id: int
) -> dict[str, tuple[str, bytes]]:
    """Roll-ups due for the commit that becomes `snapshot_id` on top of `parent`, whose change table is
    `own`: {level: (path, bytes)}.

    None are due when a commit in range was expired, the range reaches the dataset's first snapshot (no diff
    could use it), or its logs hold more than MAX_ROWS changes or MAX_BYTES.
    """
    out: dict[str, tuple[str, bytes]] = {}
    for level in (lv for lv in LEVELS if snapshot_id % lv == 0):
        window = _window(ctx, parent, snapshot_id - level)
        rows = _rows(window) if window else None
        if window is None or rows is None or rows + (own.num_rows if own is not None else 0) > MAX_ROWS:
            continue
        logs = logs_along(window)
        if ch.stored_bytes(ctx.store, logs) > MAX_BYTES:
            continue
        tables = ch.load_all(ctx.store, logs)
        if own is not None:
            tables.append(own)
        if len(tables) > 1:
            out[str(level)] = ch.encode(as_change_log(ctx, *compose(ctx, tables)))
    return out


def _window(ctx: DatasetContext, parent: LogEntry, low: int) -> list[LogEntry] | None:
    """Entries from `parent` back along first parents while their id is above `low`, oldest first."""
    window: list[LogEntry] = []
    current = parent
    while current.snapshot_id > low:
        window.append(current)
        if current.parent_id is None:
            return None
        try:
            current = ctx.log.get(current.parent_id)
        except LookupError:
            return None
    return window[::-1]


def _rows(entries: list[LogEntry]) -> int | None:
    """Change rows the entries' logs hold, from their summaries; None if one does not say."""
    total = 0
    for entry in entries:
        if not entry.changes:
            continue
        counts = [entry.summary[k] for k in _COUNTS if isinstance(entry.summary.get(k), int)]
        if not counts:
            return None
        total += sum(counts)
    return total


def as_change_log(ctx: DatasetContext, net: pa.Table, pool: pa.Array) -> pa.Table:
    """A net change (changeset.compose()) as one change log: composing it with other logs gives what
    composing the logs it summarizes does.

    Each key keeps one row: where it was before the range and is after, its row images before and after,
    and a change type that says the same (insert: absent before; delete: absent after; move: only moved).
    Keys inserted and deleted inside the range are left out, as they are in any composition.
    """
    absent_before, absent_after = ~bits.valid(net.column(FROM_FILE)), ~bits.valid(net.column(TO_FILE))
    moved = bits.to_numpy(net.column(MOVE_ONLY))
    keep = ~(absent_before & absent_after)
    if not keep.all():
        net = net.filter(bits.to_arrow(keep))
        absent_before, absent_after, moved = absent_before[keep], absent_after[keep], moved[keep]
    codes = np.select([absent_before, absent_after, moved], [0, 2, 3], default=1).astype(np.int32)
    kind = pa.DictionaryArray.from_arrays(pa.array(codes), _KINDS).cast(pa.string())
    places = ch.plain(net.select([FROM_FILE, FROM_POS, TO_FILE, TO_POS]), (FROM_FILE, TO_FILE)).columns
    columns = [*net.select(ctx.meta.primary_keys).columns, kind, *places]
    table = pa.Table.from_arrays(columns, schema=ch.change_schema(ctx.key_schema))
    image_type = pool_type(ctx)
    for name, ref in ((ch.PRE, FROM_REF), (ch.POST, TO_REF)):
        refs = net.column(ref)
        if refs.null_count < len(refs):  # a column of nothing but nulls is left out, as in commits' logs
            table = table.append_column(pa.field(name, image_type), pc.take(pool, refs))
    return table

"""Evaluating a view plan for a set of keys, at pinned source snapshots.

Keys may carry their row's location at the pinned snapshot (`_lh_file`, `_lh_pos`; a null file means the
key is absent there): the change log records where every changed row lives, so an incremental refresh
reads changed rows where they are instead of looking keys up in every data file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import versions
from ..changeset import TO_FILE, TO_POS, net_between, rows_at
from ..errors import InvalidInputError, StorageError
from ..formats import POS_COLUMN
from ..inputs import rechunk
from ..keyindex import locate
from ..scan import FILE_COLUMN, SnapshotFiles, key_filter, locations
from . import functions
from .plan import Filter, Join, MapBatches, Node, Source, root

if TYPE_CHECKING:
    from ..dataset import Dataset

BATCH_ROWS = 4096  # rows per call of a view function
SCAN_ROWS = 65_536  # rows per batch a full recompute reads from its source
LOCATION = [FILE_COLUMN, POS_COLUMN]
_KNOWN = "_lh_known"

# Per join on the plan's left spine that needs one (see needs_trace): the plan's keys with the join
# columns its left input produced, so a change on the right side finds the left rows it reaches.
Traces = dict[int, pa.Table]


@dataclass(frozen=True)
class Inputs:
    """The source datasets of a plan, each pinned at a snapshot id, and rows located there already."""

    datasets: dict[str, Dataset]
    pinned: dict[str, int]
    # Per source: keys with their location at the pinned snapshot (null file = absent), from change logs.
    located: dict[str, pa.Table] = field(default_factory=dict)

    def rows(self, name: str, keys: pa.Table) -> pa.Table:
        """Rows of source `name` for `keys`: read at known locations, the other keys looked up."""
        ds = self.datasets[name]
        ctx = ds._ctx
        if FILE_COLUMN not in keys.column_names:
            keys = self._with_locations(name, keys)
        elif _KNOWN not in keys.column_names:
            keys = keys.append_column(_KNOWN, pa.array(np.ones(keys.num_rows, bool)))
        at = keys.filter(pc.is_valid(keys.column(FILE_COLUMN)))
        parts = [rows_at(ctx, at.column(FILE_COLUMN), at.column(POS_COLUMN), ds.schema.names)]
        unknown = keys.filter(pc.is_null(keys.column(_KNOWN))).select(ds.primary_keys)
        if unknown.num_rows:
            hits = locate(self.files(name), unknown)
            parts.append(rows_at(ctx, hits.column(FILE_COLUMN), hits.column(POS_COLUMN), ds.schema.names))
        return pa.concat_tables(parts)

    def _with_locations(self, name: str, keys: pa.Table) -> pa.Table:
        """Keys with the locations `located` knows (`_lh_known` null where it knows nothing)."""
        known = self.located.get(name)
        if known is None or known.num_rows == 0 or keys.num_rows == 0:
            nulls = [pa.nulls(keys.num_rows, pa.string()), pa.nulls(keys.num_rows, pa.int64())]
            return pa.Table.from_arrays(
                [*keys.columns, *nulls, pa.nulls(keys.num_rows, pa.bool_())],
                names=[*keys.column_names, *LOCATION, _KNOWN],
            )
        marked = known.append_column(_KNOWN, pa.array(np.ones(known.num_rows, bool)))
        return keys.join(marked, keys=keys.column_names, join_type="left outer")

    def files(self, name: str) -> SnapshotFiles:
        """The pinned snapshot of a source (in a fresh process, such as a Ray worker, its log is read first)."""
        ds = self.datasets[name]
        return ds._ctx.files(versions.resolve(ds._ctx, ds.branch_name, self.pinned[name]))

    def all_rows(self, name: str) -> pa.Table:
        """Every row of a source at its pinned snapshot."""
        ds = self.datasets[name]
        return ds.read_all(columns=ds.schema.names, version=self.pinned[name])

    def keys(self, name: str) -> pa.Table:
        """Every live key of a source at its pinned snapshot, with its location."""
        ds = self.datasets[name]
        return locations(self.files(name), ds.primary_keys).select([*ds.primary_keys, *LOCATION])


def key_names(node: Node, inputs: Inputs) -> list[str]:
    """The plan's key columns (the left-most source's primary key)."""
    return inputs.datasets[root(node).dataset].primary_keys


def spine(node: Node) -> list[Join]:
    """The joins on the path from the plan's top to its left-most source, top first."""
    out = []
    while not isinstance(node, Source):
        if isinstance(node, Join):
            out.append(node)
        node = node.left if isinstance(node, Join) else node.child
    return out


def needs_trace(join: Join, inputs: Inputs) -> bool:
    """Whether the join's left columns may be computed by a function (so only a trace can tell which left
    rows a right-side change reaches)."""
    ds = inputs.datasets[root(join.left).dataset]
    return _maps(join.left) or any(c not in ds.schema.names for c in join.on)


def _index_join(left: pa.Table, right: pa.Table, left_on: list[str], right_on: list[str], how: str) -> pa.Table:
    """Left rows with their matching right row, joining only keys and row numbers (Arrow's join cannot carry
    nested columns)."""
    li = left.select(left_on).append_column("_lh_l", pa.array(np.arange(left.num_rows)))
    ri = right.select(right_on).rename_columns(left_on).append_column("_lh_r", pa.array(np.arange(right.num_rows)))
    pairs = li.join(ri, keys=left_on, join_type="left outer" if how == "left" else "inner").sort_by("_lh_l")
    picked_left = left.take(pairs.column("_lh_l"))
    extra = [c for c in right.column_names if c not in right_on]
    clash = [c for c in extra if c in left.column_names]
    if clash:
        raise InvalidInputError(f"join would produce duplicate column(s) {clash}; rename them in one of the inputs")
    picked_right = right.select(extra).take(pairs.column("_lh_r"))
    return pa.Table.from_arrays([*picked_left.columns, *picked_right.columns], names=[*left.column_names, *extra])


def _check_map_output(out: pa.Table, inp: pa.Table, keys: list[str], fn: str) -> None:
    missing = [k for k in keys if k not in out.column_names]
    if missing:
        raise InvalidInputError(f"view function {fn} dropped key column(s) {missing}; keep them in its output")
    if out.num_rows == 0:
        return
    if out.num_rows == inp.num_rows and all(out.column(k).equals(inp.column(k)) for k in keys):
        return  # the common case, one output row per input row in order: nothing to join
    marked = inp.select(keys).append_column("_lh_in", pa.array(np.ones(inp.num_rows, bool)))
    joined = out.select(keys).join(marked, keys=keys, join_type="left outer")
    if joined.num_rows != out.num_rows or pc.any(pc.is_null(joined.column("_lh_in"))).as_py():
        raise InvalidInputError(
            f"view function {fn} returned rows whose keys are not among its input rows (or repeated them); "
            "a view maps each input row to at most one output row with the same key"
        )


def _in_batches(rows: pa.Table, step: Callable[[pa.Table], pa.Table]) -> pa.Table:
    parts = [step(rows.slice(i, BATCH_ROWS)) for i in range(0, rows.num_rows, BATCH_ROWS)]
    return pa.concat_tables(parts, promote_options="permissive") if parts else rows


def evaluate(node: Node, keys: pa.Table | None, inputs: Inputs, traces: Traces | None = None) -> pa.Table:
    """The plan's output rows for `keys` (keys the plan does not produce are simply absent; None = all keys).

    With `traces`, the joins of spine(node) that need_trace() record their left input's keys and join columns.
    """
    tracked = {id(j): i for i, j in enumerate(spine(node)) if needs_trace(j, inputs)} if traces is not None else {}
    return _evaluate(node, keys, inputs, traces, tracked)


def _evaluate(
    node: Node, keys: pa.Table | None, inputs: Inputs, traces: Traces | None, tracked: dict[int, int]
) -> pa.Table:
    if isinstance(node, Source):
        return inputs.all_rows(node.dataset) if keys is None else inputs.rows(node.dataset, keys)
    if isinstance(node, Filter | MapBatches):
        rows = _evaluate(node.child, keys, inputs, traces, tracked)
        if rows.num_rows == 0 and isinstance(node, MapBatches) and node.output_schema is not None:
            return node.output_schema.empty_table()
        return _in_batches(rows, _step(node, inputs))
    left = _evaluate(node.left, keys, inputs, traces, tracked)
    if traces is not None and id(node) in tracked:
        traces[tracked[id(node)]] = left.select([*key_names(node, inputs), *node.on])
    right_keys = key_names(node.right, inputs)
    if left.num_rows == 0:
        lookup = _empty_like_right(node, inputs)
    else:
        # A null join key matches nothing (and lookups refuse null keys): look up only complete keys.
        probe = distinct(left.select(list(node.on))).drop_null()
        lookup = _evaluate(node.right, probe.rename_columns(right_keys), inputs, None, {})
    return _index_join(left, lookup, list(node.on), right_keys, node.how)


def stream(node: Node, inputs: Inputs) -> Iterator[pa.Table]:
    """All of the plan's output rows (as evaluate(node, None, inputs)), batch by batch as the left-most source is
    scanned, so a full recompute holds one batch at a time. A join's output comes as one table (its right side is
    looked up for all left rows at once, and spine joins' traces need evaluate())."""
    if isinstance(node, Source):
        ds = inputs.datasets[node.dataset]
        for batch in ds.read(columns=ds.schema.names, version=inputs.pinned[node.dataset], batch_size=SCAN_ROWS):
            yield pa.Table.from_batches([batch])
    elif isinstance(node, Join):
        yield evaluate(node, None, inputs)
    else:
        step = _step(node, inputs)
        # Full batches, as evaluate() calls functions with: a filter upstream must not shrink what they get.
        for part in rechunk(stream(node.child, inputs), BATCH_ROWS):
            out = step(part)
            if out.num_rows:
                yield out


def _step(node: Filter | MapBatches, inputs: Inputs) -> Callable[[pa.Table], pa.Table]:
    """What a filter or map_batches step does to one batch of its input rows."""
    fn = functions.load(node.fn)
    if isinstance(node, Filter):

        def keep(part: pa.Table) -> pa.Table:
            result = fn(part)
            mask = result if isinstance(result, pa.Array | pa.ChunkedArray) else pa.array(result, pa.bool_())
            if len(mask) != part.num_rows:
                raise InvalidInputError(f"filter {node.fn} returned {len(mask)} values for {part.num_rows} rows")
            return part.filter(pc.fill_null(mask, False))

        return keep
    names = key_names(node, inputs)
    schema = node.output_schema

    def apply(part: pa.Table) -> pa.Table:
        out = functions.as_table(fn(part), f"view function {node.fn}")
        _check_map_output(out, part, names, node.fn)
        return out.cast(schema) if schema is not None else out

    return apply


def _maps(node: Node) -> bool:
    """Whether a map_batches step lies on the path from `node` to its left-most source."""
    while not isinstance(node, Source):
        if isinstance(node, MapBatches):
            return True
        node = node.left if isinstance(node, Join) else node.child
    return False


def distinct(table: pa.Table) -> pa.Table:
    """Unique rows of a table of key columns."""
    return table.group_by(table.column_names, use_threads=False).aggregate([])


def _empty_like_right(node: Join, inputs: Inputs) -> pa.Table:
    right_root = root(node.right)
    ds = inputs.datasets[right_root.dataset]
    empty = ds.schema.empty_table()
    return evaluate(node.right, empty.select(ds.primary_keys), inputs) if node.right != right_root else empty


def all_keys(node: Node, inputs: Inputs) -> pa.Table:
    """Every key the plan may produce: the left-most source's keys at its pinned snapshot (with locations)."""
    return inputs.keys(root(node).dataset)


def affected(node: Node, old: dict[str, int], inputs: Inputs, traces: Traces | None = None) -> pa.Table | None:
    """Keys whose output may differ between the `old` pinned snapshots and `inputs`; None = recompute all.

    Keys come with their location at the pinned snapshot where the change logs tell it (and those locations
    are kept in `inputs.located` for later lookups). `traces` are the spine joins' traces at `old`.
    """
    tracked = {id(j): i for i, j in enumerate(spine(node))}
    return _affected(node, old, inputs, traces or {}, tracked)


def _affected(
    node: Node, old: dict[str, int], inputs: Inputs, traces: Traces, tracked: dict[int, int]
) -> pa.Table | None:
    if isinstance(node, Source):
        ds = inputs.datasets[node.dataset]
        ctx = ds._ctx
        try:
            start = ctx.log.get(old[node.dataset])
            end = ctx.log.get(inputs.pinned[node.dataset])
        except (KeyError, StorageError):
            return None
        net = net_between(ctx, start, end)
        found = net.select([*ds.primary_keys, TO_FILE, TO_POS]).rename_columns([*ds.primary_keys, *LOCATION])
        inputs.located[node.dataset] = found
        return found
    if isinstance(node, Filter | MapBatches):
        return _affected(node.child, old, inputs, traces, tracked)
    left = _affected(node.left, old, inputs, traces, tracked)
    right = _affected(node.right, old, inputs, traces, {})  # joins off the spine keep no trace
    if left is None or right is None:
        return None
    if right.num_rows == 0:
        return left
    probe = right.select(key_names(node.right, inputs)).rename_columns(list(node.on))
    if needs_trace(node, inputs):
        trace = traces.get(tracked[id(node)]) if id(node) in tracked else None
        if trace is None:
            return None
        # Left rows the change log does not name kept their left-side output, so the join columns traced
        # at `old` are still theirs; rows the left side changed are in `left` already.
        hits = trace.join(distinct(probe), keys=list(node.on), join_type="left semi")
        return _union(left, hits.select(key_names(node, inputs)))
    source = root(node.left)
    ds = inputs.datasets[source.dataset]
    snap = inputs.files(source.dataset)
    # A left row whose join columns matched a changed right key only at `old` has changed itself (it is in
    # `left`): reading the pinned snapshot finds every other one, with its location.
    found = locations(snap, list(dict.fromkeys([*ds.primary_keys, *node.on])), key_filter(probe))
    if len(node.on) > 1:  # isin per column over-matches combinations of values
        found = found.join(distinct(probe), keys=list(node.on), join_type="left semi")
    return _union(left, found.select([*ds.primary_keys, *LOCATION]))


def _union(located: pa.Table, more: pa.Table) -> pa.Table:
    """Keys of both tables once; a key in `located` keeps its location there (`more` may lack locations)."""
    names = [c for c in located.column_names if c not in (*LOCATION, _KNOWN)]
    extra = more.join(located.select(names), keys=names, join_type="left anti")
    if FILE_COLUMN not in extra.column_names:
        n = extra.num_rows  # unknown locations: a lookup finds them (a null file alone would mean "absent")
        extra = pa.Table.from_arrays(
            [*extra.select(names).columns, pa.nulls(n, pa.string()), pa.nulls(n, pa.int64()), pa.nulls(n, pa.bool_())],
            names=[*names, *LOCATION, _KNOWN],
        )
    return pa.concat_tables([_marked(located, names), _marked(extra, names)], promote_options="permissive")


def _marked(keys: pa.Table, names: list[str]) -> pa.Table:
    """Located keys with the `_lh_known` flag (true unless a lookup must find the key)."""
    if _KNOWN not in keys.column_names:
        keys = keys.append_column(_KNOWN, pa.array(np.ones(keys.num_rows, bool)))
    return keys.select([*names, *LOCATION, _KNOWN])

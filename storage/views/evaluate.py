"""Evaluating a view plan for a set of keys, at pinned source snapshots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..changeset import net_between
from ..errors import InvalidInputError, StorageError
from ..scan import key_filter
from . import functions
from .plan import Filter, Join, MapBatches, Node, Source, root

if TYPE_CHECKING:
    from ..dataset import Dataset

BATCH_ROWS = 4096


@dataclass(frozen=True)
class Inputs:
    """The source datasets of a plan, each pinned at a snapshot id."""

    datasets: dict[str, Dataset]
    pinned: dict[str, int]

    def rows(self, name: str, keys: pa.Table) -> pa.Table:
        ds = self.datasets[name]
        return ds.take(keys, columns=ds.schema.names, version=self.pinned[name])

    def keys(self, name: str) -> pa.Table:
        ds = self.datasets[name]
        return ds.read_all(columns=ds.primary_keys, version=self.pinned[name])


def key_names(node: Node, inputs: Inputs) -> list[str]:
    """The plan's key columns (the left-most source's primary key)."""
    return inputs.datasets[root(node).dataset].primary_keys


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


def evaluate(node: Node, keys: pa.Table, inputs: Inputs) -> pa.Table:
    """The plan's output rows for `keys` (keys the plan does not produce are simply absent)."""
    if isinstance(node, Source):
        return inputs.rows(node.dataset, keys)
    if isinstance(node, Filter):
        rows = evaluate(node.child, keys, inputs)
        fn = functions.load(node.fn)

        def keep(part: pa.Table) -> pa.Table:
            result = fn(part)
            mask = result if isinstance(result, pa.Array | pa.ChunkedArray) else pa.array(result, pa.bool_())
            if len(mask) != part.num_rows:
                raise InvalidInputError(f"filter {node.fn} returned {len(mask)} values for {part.num_rows} rows")
            return part.filter(pc.fill_null(mask, False))

        return _in_batches(rows, keep)
    if isinstance(node, MapBatches):
        rows = evaluate(node.child, keys, inputs)
        fn = functions.load(node.fn)
        names = key_names(node, inputs)

        def apply(part: pa.Table) -> pa.Table:
            out = functions.as_table(fn(part), f"view function {node.fn}")
            _check_map_output(out, part, names, node.fn)
            return out.cast(node.output_schema) if node.output_schema is not None else out

        if rows.num_rows == 0 and node.output_schema is not None:
            return node.output_schema.empty_table()
        return _in_batches(rows, apply)
    left = evaluate(node.left, keys, inputs)
    right_keys = key_names(node.right, inputs)
    if left.num_rows == 0:
        lookup = _empty_like_right(node, inputs)
    else:
        # A null join key matches nothing (and take() refuses null keys): look up only complete keys.
        probe = distinct(left.select(list(node.on))).drop_null()
        lookup = evaluate(node.right, probe.rename_columns(right_keys), inputs)
    return _index_join(left, lookup, list(node.on), right_keys, node.how)


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
    """Every key the plan may produce: the left-most source's keys at its pinned snapshot."""
    return inputs.keys(root(node).dataset)


def affected(node: Node, old: dict[str, int], inputs: Inputs) -> pa.Table | None:
    """Keys whose output may differ between the `old` pinned snapshots and `inputs`; None = recompute all."""
    if isinstance(node, Source):
        ds = inputs.datasets[node.dataset]
        ctx = ds._ctx
        try:
            start = ctx.log.get(old[node.dataset])
            end = ctx.log.get(inputs.pinned[node.dataset])
        except (KeyError, StorageError):
            return None
        return net_between(ctx, start, end).select(ds.primary_keys)
    if isinstance(node, Filter | MapBatches):
        return affected(node.child, old, inputs)
    left = affected(node.left, old, inputs)
    right = affected(node.right, old, inputs)
    if left is None or right is None:
        return None
    if right.num_rows == 0:
        return left
    source = root(node.left)
    ds = inputs.datasets[source.dataset]
    if _maps(node.left) or any(c not in ds.schema.names for c in node.on):
        # A function on the left may compute or rewrite the join columns: right-side changes cannot be traced
        # to left keys through the source's columns, so recompute everything.
        return None
    probe = right.rename_columns(list(node.on))
    hits = [left]
    for version in (old.get(source.dataset), inputs.pinned[source.dataset]):
        if version is None:
            continue
        found = ds.read_all(
            filter=key_filter(probe), columns=list(dict.fromkeys([*ds.primary_keys, *node.on])), version=version
        )
        hits.append(found.select(ds.primary_keys))
    return distinct(pa.concat_tables(hits))

"""Per-file column statistics kept in the manifest, and the pruning guarantees derived from them."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def statable(field: pa.Field) -> bool:
    """Whether min/max of this column are kept (orderable scalar types only)."""
    t = field.type
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_time(t)
        or pa.types.is_decimal(t)
        or pa.types.is_boolean(t)
    )


def stat_fields(schema: pa.Schema, skip: set[str]) -> list[pa.Field]:
    """The manifest's statistics columns for a dataset schema."""
    out: list[pa.Field] = []
    for f in schema:
        if f.name in skip or not statable(f):
            continue
        out += [pa.field(f"min:{f.name}", f.type), pa.field(f"max:{f.name}", f.type)]
        out.append(pa.field(f"nulls:{f.name}", pa.int64()))
    return out


def compute(table: pa.Table, fields: list[pa.Field]) -> dict[str, Any]:
    """Statistics of one data file's live rows, as python scalars keyed by manifest column."""
    out: dict[str, Any] = {}
    for f in fields:
        if not f.name.startswith("nulls:"):
            continue
        name = f.name[len("nulls:") :]
        col = table.column(name)
        out[f.name] = col.null_count
        lo = hi = None
        has_nan = pa.types.is_floating(col.type) and pc.any(pc.is_nan(col)).as_py()
        if not has_nan and col.null_count < len(col):
            mm = pc.min_max(col)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
        out[f"min:{name}"], out[f"max:{name}"] = lo, hi
    return out


def guarantee(row: dict[str, Any], fields: list[pa.Field]) -> pc.Expression:
    """An expression true for every row of the file, used by Arrow to skip files a filter excludes.

    Columns holding nulls or NaN are left out: `x >= min` is false for null rows, so claiming it would let
    Arrow prune files that an `is_null(x)` filter needs.
    """
    expr: pc.Expression = pc.scalar(True)
    for f in fields:
        if not f.name.startswith("nulls:"):
            continue
        name = f.name[len("nulls:") :]
        lo, hi = row.get(f"min:{name}"), row.get(f"max:{name}")
        if row.get(f.name) or lo is None or hi is None:
            continue
        typ = next(g.type for g in fields if g.name == f"min:{name}")
        col = pc.field(name)
        expr = expr & (col >= pa.scalar(lo, typ)) & (col <= pa.scalar(hi, typ))
    return expr

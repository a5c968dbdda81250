"""`labelhouse diff` and `history`: what changed between two versions, and every version of one row."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import typer
from rich.console import Group
from rich.text import Text

from storage import Catalog, Dataset

from ..options import DEFAULT_CATALOG, VERSION_HELP, CatalogOption, DatasetArgument, JsonOption, parse_version
from ..output import emit
from ..tables import records_table

LimitOption = Annotated[int, typer.Option("--limit", min=0, help="Print at most this many rows.")]


def diff(
    dataset: DatasetArgument,
    start: Annotated[str, typer.Argument(help=f"From this version. {VERSION_HELP}", show_default=False)],
    end: Annotated[str | None, typer.Argument(help="To this version (default: the head of main).")] = None,
    limit: LimitOption = 50,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Rows that changed from START to END, with their change type (insert, delete, update pre/postimage)."""
    ds = Catalog(catalog).dataset(dataset)
    start_id = ds.snapshot(parse_version(start)).id
    end_id = ds.snapshot(None if end is None else parse_version(end)).id
    counts: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for part in ds.iter_diff(start_id, end_id):
        counts.update(part["_change_type"].to_pylist())
        rows += _paired(part, max(limit - len(rows), 0)).to_pylist()
    stats = {
        "inserted": counts["insert"],
        "updated": counts["update_postimage"],
        "deleted": counts["delete"],
    }
    data = {"dataset": ds.name, "start": start_id, "end": end_id, **stats, "rows": rows}
    columns = ["_change_type", *_columns(ds)]
    title = f"{ds.name}: snapshot {start_id} -> {end_id}: +{stats['inserted']} ~{stats['updated']} -{stats['deleted']}"
    emit(data, as_json, lambda: records_table(rows, columns, title))


def _paired(part: pa.Table, limit: int) -> pa.Table:
    """The first `limit` rows of a diff part, each update pre-image next to its post-image (iter_diff lists
    them as two blocks in the same key order), so a cut-off listing never shows half an update."""
    kinds = np.asarray(part["_change_type"].to_pylist(), dtype=object)
    pre, post = np.flatnonzero(kinds == "update_preimage"), np.flatnonzero(kinds == "update_postimage")
    others = np.flatnonzero((kinds != "update_preimage") & (kinds != "update_postimage"))
    order = np.concatenate([others, np.column_stack([pre, post]).ravel()]).astype(np.int64)
    return part.take(order[:limit])


def history(
    dataset: DatasetArgument,
    key: Annotated[str, typer.Argument(help="Primary key value of the row.", show_default=False)],
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Every version of one row on main, newest first: when it was inserted, updated and deleted."""
    ds = Catalog(catalog).dataset(dataset)
    states = ds.history(_key(ds, key)).to_pylist()
    data = {"dataset": ds.name, "key": key, "versions": states}
    columns = ["_snapshot_id", "_committed_at", "_change_type", *_columns(ds)]

    def render() -> Group | Text:
        if not states:
            return Text(f"{ds.name} has no row with key {key!r} in any version")
        return Group(records_table(states, columns, f"History of {key} in {ds.name}"))

    emit(data, as_json, render)


def _columns(ds: Dataset) -> list[str]:
    return [name for name in ds.schema.names if name not in ds.record_fields]


def _key(ds: Dataset, text: str) -> Any:
    """The key as the dataset's key column type (a single-column key given on the command line)."""
    if len(ds.primary_keys) != 1:
        raise typer.BadParameter(f"{ds.name} has a compound key {ds.primary_keys}; history takes one column")
    kind = ds.schema.field(ds.primary_keys[0]).type
    if pa.types.is_integer(kind):
        try:
            return int(text)
        except ValueError:
            raise typer.BadParameter(f"{ds.name} is keyed by integers, got {text!r}", param_hint="KEY") from None
    return text

"""Primary keys of a batch: present and unique, so an upsert replaces exactly one row per key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from .report import RowReasons


def key_problems(table: pa.Table, key_columns: Sequence[str]) -> RowReasons:
    """Rows whose key is null or shared with another row of the batch."""
    columns = [table.column(name).to_pylist() for name in key_columns]
    keys: list[tuple[Any, ...]] = list(zip(*columns, strict=True))
    positions: dict[tuple[Any, ...], list[int]] = {}
    for row, key in enumerate(keys):
        positions.setdefault(key, []).append(row)
    failing: dict[int, str] = {}
    for key, rows in positions.items():
        if any(part is None for part in key):
            failing.update(dict.fromkeys(rows, f"primary key {_show(key)} has a null part"))
        elif len(rows) > 1:
            failing.update(dict.fromkeys(rows, f"primary key {_show(key)} appears {len(rows)} times in the batch"))
    return failing


def _show(key: tuple[Any, ...]) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)

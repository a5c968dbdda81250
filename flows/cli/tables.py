"""Rich tables of records, versions and key facts."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from .output import json_default

VERSION_COLUMNS = ["id", "branch", "created (UTC)", "operation", "tags", "rows", "changes", "message"]


def cell(value: Any) -> Text:
    """One value as table text (plain, never markup): nulls dimmed, blobs by size, structs as JSON."""
    if value is None:
        return Text("null", style="dim")
    if isinstance(value, bytes):
        return Text(f"<{len(value)} bytes>", style="dim")
    if isinstance(value, datetime):
        return Text(value.isoformat(sep=" ", timespec="seconds"))
    if isinstance(value, dict | list):
        return Text(json.dumps(value, default=json_default, ensure_ascii=False))
    return Text(str(value))


def records_table(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str, no_wrap: Collection[str] = ()
) -> Table:
    """One row per record, one column per key in `columns`; `no_wrap` columns are never folded."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for name in columns:
        table.add_column(name, no_wrap=name in no_wrap)
    for record in records:
        table.add_row(*(cell(record.get(name)) for name in columns))
    return table


def _operation(record: Mapping[str, Any]) -> str:
    source = record["summary"].get("restored_from", record["summary"].get("from_snapshot"))
    return record["operation"] if source is None else f"{record['operation']} from {source}"


def changes_text(summary: Mapping[str, Any]) -> str:
    """A write's row changes as `+inserted ~updated -deleted` (empty for snapshots that change no rows)."""
    if "rows_inserted" not in summary:
        return ""
    return f"+{summary['rows_inserted']} ~{summary['rows_updated']} -{summary['rows_deleted']}"


def versions_table(records: Sequence[Mapping[str, Any]], title: str) -> Table:
    """Version records as a history: rows after each snapshot and its +inserted ~updated -deleted rows.

    Parents are left to --json: they are the previous id on the branch, or named by the operation
    (`restore from 1`, `create_branch from 4`).
    """
    shown = [
        {
            "id": r["snapshot_id"],
            "branch": r["branch"],
            "created (UTC)": r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            "operation": _operation(r),
            "tags": ", ".join(r["tags"]),
            "rows": r["summary"].get("rows"),
            "changes": changes_text(r["summary"]),
            "message": r["message"] or "",
        }
        for r in records
    ]
    return records_table(shown, VERSION_COLUMNS, title, no_wrap={"id", "created (UTC)", "rows"})


def facts_table(facts: Mapping[str, Any], title: str) -> Table:
    """Name/value pairs, one per row; snake_case names are shown with spaces."""
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold")
    table.add_column()
    for name, value in facts.items():
        table.add_row(Text(name.replace("_", " ")), cell(value))
    return table

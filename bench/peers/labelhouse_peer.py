"""Labelhouse (this repo's engine): a catalog directory, one dataset per table, blobs as record fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from storage import ArrowCacheOptions, Catalog, CommitConflictError, WriteOptions

from .base import KEY, VIEW_SCHEMA, Peer, RowReader, where_expr, where_sql

# Module-level path so a view refresh in any process can import the same function.
FEATURES = "bench.peers.base:features"
# W5 measures diffs: its table logs row images, as every Delta table here has its change data feed on.
ROW_IMAGE_TABLES = frozenset({"w5"})


class LabelhousePeer(Peer):
    name = "labelhouse"
    version_of = "labelhouse"
    how: ClassVar[dict[str, str]] = {
        "create": "cat.create_dataset(record_fields=[image]) + ds.append(): blobs to ArrayRecord",
        "random_access": "ds.random_access(): [i], __getitems__ (row dicts, blob included)",
        "scan": "ds.read_all(filter=expr): manifest min/max pruning, files through the Arrow cache",
        "scan_duckdb": "ds.sql() (DuckDB over the snapshot's pyarrow dataset)",
        "upsert": "ds.upsert(): deletion vectors + new rows",
        "read": "ds.read_all(version=) through the Arrow cache (the first read decodes Parquet and fills it)",
        "diff": "ds.diff(a, b) from per-commit change logs; the W5 table logs row images (pre+post)",
        "history": "ds.history(key) from change logs",
        "view": "cat.materialize(ds.map_batches(fn)); mv.refresh() vs mv.refresh(full=True)",
        "concurrency": "optimistic commits, put-if-absent log entry, key-aware rebase + retry",
    }
    conflict_errors = (CommitConflictError,)

    def __init__(self, root: str) -> None:
        super().__init__(root)
        # Decoded copies of data files beside the tables, not in them: table sizes stay what the format writes.
        self.cat = Catalog(root, arrow_cache=ArrowCacheOptions(f"{root.rstrip('/')}.arrow-cache"))

    def create(self, table: str, data: pa.Table, blob_columns: Sequence[str]) -> None:
        options = WriteOptions(log_row_images=table in ROW_IMAGE_TABLES)
        ds = self.cat.create_dataset(table, data.schema, [KEY], record_fields=list(blob_columns), options=options)
        ds.append(data)

    def reader(self, table: str) -> RowReader:
        ra = self.cat.dataset(table).random_access()
        return RowReader(ra.__getitem__, ra.__getitems__, lambda: None)

    def scan(self, table: str, spec: dict[str, Any]) -> pa.Table:
        return self.cat.dataset(table).read_all(filter=where_expr(spec))

    def scan_duckdb(self, table: str, spec: dict[str, Any]) -> pa.Table:
        return self.cat.dataset(table).sql(f"SELECT * FROM {table} WHERE {where_sql(spec)}")

    def upsert(self, table: str, rows: pa.Table) -> None:
        self.cat.dataset(table).upsert(rows)

    def append(self, table: str, rows: pa.Table) -> None:
        self.cat.dataset(table).append(rows)

    def version(self, table: str) -> Any:
        return self.cat.dataset(table).snapshot().id

    def read_version(self, table: str, version: Any) -> pa.Table:
        return self.cat.dataset(table).read_all(version=version)

    def diff(self, table: str, start: Any, end: Any) -> pa.Table:
        return self.cat.dataset(table).diff(start, end)

    def history(self, table: str, key: int, versions: Sequence[Any]) -> pa.Table:
        return self.cat.dataset(table).history(key)

    def view_create(self, source: str, view: str) -> None:
        self.cat.materialize(view, self.cat.dataset(source).map_batches(FEATURES, output_schema=VIEW_SCHEMA))

    def view_refresh(self, source: str, view: str) -> dict[str, Any]:
        stats = self.cat.materialized_view(view).refresh()
        return {"rows_recomputed": stats.keys_recomputed}

    def view_recompute(self, source: str, view: str) -> dict[str, Any]:
        stats = self.cat.materialized_view(view).refresh(full=True)
        return {"rows_recomputed": stats.keys_recomputed}

    def view_read(self, view: str) -> pa.Table:
        return self.cat.materialized_view(view).read_all()

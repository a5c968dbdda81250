"""Apache Iceberg (`pyiceberg`) with a SQL catalog on SQLite: one catalog per peer root, tables in `bench`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table

from .base import KEY, Peer, RowReader, index_columns, where_sql

NAMESPACE = "bench"


class IcebergPeer(Peer):
    name = "iceberg"
    version_of = "pyiceberg"
    how: ClassVar[dict[str, str]] = {
        "create": "catalog.create_table() + table.append()",
        "random_access": "emulated: scan(row_filter='id = i' / 'id IN (...)').to_arrow() (no row-index API)",
        "scan": "scan(row_filter=SQL).to_arrow(): manifest + row-group pruning",
        "scan_duckdb": "scan().to_duckdb() then SQL: pyiceberg materializes the scan first (the iceberg "
        "extension needs a download)",
        "upsert": "table.upsert(join_cols=[id]): copy-on-write overwrite + append",
        "read": "scan(snapshot_id=v).to_arrow()",
        "diff": "emulated: full read of both snapshots, compared by key (no row-level change feed)",
        "history": "emulated: a filtered scan of every snapshot",
        "view": "no views, no row-level change feed (incremental_append_scan sees appends only): full diff "
        "of two snapshots drives the UDF, upsert into a view table",
        "concurrency": "SQL catalog compare-and-swap of the metadata pointer; CommitFailedException retried",
    }
    # ValidationException: an overwrite found files a concurrent commit added (pyiceberg's conflict check).
    conflict_errors = (CommitFailedException, ValidationException)

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.cat = SqlCatalog(
            "bench", uri=f"sqlite:///{os.path.join(root, 'catalog.db')}", warehouse=f"file://{root}/warehouse"
        )
        self.cat.create_namespace_if_not_exists(NAMESPACE)

    def path(self, table: str) -> str:
        return os.path.join(self.root, "warehouse", NAMESPACE, table)  # the SQL catalog's default layout

    def _table(self, table: str) -> Table:
        return self.cat.load_table(f"{NAMESPACE}.{table}")

    def create(self, table: str, data: pa.Table, blob_columns: Sequence[str]) -> None:
        t = self.cat.create_table(f"{NAMESPACE}.{table}", schema=data.schema)
        t.append(data)

    def reader(self, table: str) -> RowReader:
        t = self._table(table)

        def many(ix: list[int]) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = (
                t.scan(row_filter=f"{KEY} IN ({','.join(map(str, ix))})").to_arrow().to_pylist()
            )
            return rows

        def one(i: int) -> dict[str, Any]:
            row: dict[str, Any] = t.scan(row_filter=f"{KEY} = {i}").to_arrow().to_pylist()[0]
            return row

        return RowReader(one, many, lambda: None)

    def scan(self, table: str, spec: dict[str, Any]) -> pa.Table:
        return self._table(table).scan(row_filter=where_sql(spec)).to_arrow()

    def scan_duckdb(self, table: str, spec: dict[str, Any]) -> pa.Table:
        con = self._table(table).scan().to_duckdb("t")
        try:
            return con.sql(f"SELECT * FROM t WHERE {where_sql(spec)}").to_arrow_table()
        finally:
            con.close()

    def upsert(self, table: str, rows: pa.Table) -> None:
        self._table(table).upsert(rows, join_cols=[KEY])

    def append(self, table: str, rows: pa.Table) -> None:
        self._table(table).append(rows)

    def version(self, table: str) -> Any:
        snap = self._table(table).current_snapshot()
        return None if snap is None else snap.snapshot_id

    def read_version(self, table: str, version: Any) -> pa.Table:
        t = self._table(table)
        return t.scan(snapshot_id=version, selected_fields=tuple(index_columns(t.schema().column_names))).to_arrow()

    def lookup(self, table: str, key: int, version: Any) -> pa.Table:
        t = self._table(table)
        fields = tuple(index_columns(t.schema().column_names))
        return t.scan(snapshot_id=version, row_filter=f"{KEY} = {key}", selected_fields=fields).to_arrow()

    def overwrite(self, table: str, rows: pa.Table) -> None:
        self._table(table).overwrite(rows)

    def drop(self, table: str) -> None:
        name = f"{NAMESPACE}.{table}"
        if self.cat.table_exists(name):
            self.cat.drop_table(name)
        super().drop(table)

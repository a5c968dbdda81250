"""Plain Parquet with `pyarrow.parquet`: one file per version copy, no table format on top."""

from __future__ import annotations

import bisect
import itertools
import os
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from .base import BLOB, RowReader, index_columns, where_expr, where_sql
from .rewrite import RewritePeer

FILE = "part-0.parquet"
# Row groups of 64 Ki rows (Labelhouse's default), or of 1,024 rows (~50 MB) when rows carry a blob, so a
# single-row read of the blob table does not pull in a whole 1 GB column chunk.
ROWS_PER_GROUP, BLOB_ROWS_PER_GROUP = 64 * 1024, 1024


class ParquetPeer(RewritePeer):
    name = "parquet"
    version_of = "pyarrow"
    how: ClassVar[dict[str, str]] = {
        "create": "pq.write_table(row_group_size=64 Ki rows, 1,024 with blobs)",
        "random_access": "ParquetFile.read_row_group(g) of the row's group, then slice (row groups of 1,024)",
        "scan": "pq.read_table(filters=expr): row-group statistics",
        "scan_duckdb": "DuckDB read_parquet()",
        "upsert": "emulated: read all, drop matched keys, concat, write a new file",
        "read": "pq.read_table(copy of version v)",
        "diff": "emulated: full read of both copies, compared by key",
        "history": "emulated: a filtered read of every copy",
        "view": "no views or change feed: full diff of two copies drives the UDF, rewrite of the view copy",
        "concurrency": "none: read-modify-write of whole files, last publish wins",
    }

    def write_copy(self, directory: str, data: pa.Table) -> None:
        os.makedirs(directory)
        rows = BLOB_ROWS_PER_GROUP if BLOB in data.column_names else ROWS_PER_GROUP
        pq.write_table(data, os.path.join(directory, FILE), row_group_size=rows)

    def read_copy(self, directory: str, index_only: bool = False) -> pa.Table:
        path = os.path.join(directory, FILE)
        columns = index_columns(pq.read_schema(path).names) if index_only else None
        return pq.read_table(path, columns=columns)

    def reader(self, table: str) -> RowReader:
        pf = pq.ParquetFile(os.path.join(self.current(table), FILE))
        starts = [0, *itertools.accumulate(pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups))]

        def one(i: int) -> dict[str, Any]:
            g = bisect.bisect_right(starts, i) - 1
            row: dict[str, Any] = pf.read_row_group(g).slice(i - starts[g], 1).to_pylist()[0]
            return row

        def many(ix: list[int]) -> list[dict[str, Any]]:
            group_of = [bisect.bisect_right(starts, i) - 1 for i in ix]
            groups = sorted(set(group_of))
            read = pf.read_row_groups(groups)
            # Groups come back in ascending order, concatenated: where each one starts inside `read`.
            offset, at_row = {}, 0
            for g in groups:
                offset[g], at_row = at_row, at_row + starts[g + 1] - starts[g]
            at = [offset[g] + i - starts[g] for i, g in zip(ix, group_of, strict=True)]
            rows: list[dict[str, Any]] = read.take(pa.array(at)).to_pylist()
            return rows

        return RowReader(one, many, pf.close)

    def scan(self, table: str, spec: dict[str, Any]) -> pa.Table:
        return pq.read_table(os.path.join(self.current(table), FILE), filters=where_expr(spec))

    def scan_duckdb(self, table: str, spec: dict[str, Any]) -> pa.Table:
        import duckdb

        path = os.path.join(self.current(table), FILE)
        con = duckdb.connect()
        try:
            return con.sql(f"SELECT * FROM read_parquet('{path}') WHERE {where_sql(spec)}").to_arrow_table()
        finally:
            con.close()

"""Hugging Face `datasets`: save_to_disk copies (memory-mapped Arrow files), one per version."""

from __future__ import annotations

import gc
from typing import Any, ClassVar

import datasets
import pyarrow as pa

from .base import RowReader, index_columns, mask, where_expr
from .rewrite import RewritePeer

datasets.disable_progress_bars()


class HfPeer(RewritePeer):
    name = "hf_datasets"
    version_of = "datasets"
    how: ClassVar[dict[str, str]] = {
        "create": "datasets.Dataset(table).save_to_disk()",
        "random_access": "load_from_disk(): ds[i], ds.__getitems__ (memory-mapped Arrow)",
        "scan": "ds.with_format('arrow').filter(fn, batched=True, keep_in_memory=True)",
        "scan_duckdb": "DuckDB over the memory-mapped Arrow table (no statistics to prune with)",
        "upsert": "emulated: read all, drop matched keys, concat, save_to_disk a new copy",
        "read": "load_from_disk(copy of version v)",
        "diff": "emulated: full read of both copies, compared by key",
        "history": "emulated: a filtered read of every copy",
        "view": "no views or change feed: full diff of two copies drives the UDF, rewrite of the view copy",
        "concurrency": "none: read-modify-write of whole copies, last publish wins",
    }

    def write_copy(self, directory: str, data: pa.Table) -> None:
        datasets.Dataset(data).save_to_disk(directory)

    def read_copy(self, directory: str, index_only: bool = False) -> pa.Table:
        table = datasets.load_from_disk(directory).data.table
        return table.select(index_columns(table.column_names)) if index_only else table

    def reader(self, table: str) -> RowReader:
        held: list[Any] = [datasets.load_from_disk(self.current(table))]

        def close() -> None:  # unmap the files, so a cold-cache run can evict them
            held.clear()
            gc.collect()

        return RowReader(lambda i: held[0][i], lambda ix: held[0].__getitems__(ix), close)

    def scan(self, table: str, spec: dict[str, Any]) -> pa.Table:
        expr = where_expr(spec)
        ds = datasets.load_from_disk(self.current(table)).with_format("arrow")
        kept = ds.filter(lambda batch: mask(batch, expr), batched=True, keep_in_memory=True)
        return kept[:] if len(kept) else ds.data.table.schema.empty_table()

    def duckdb_source(self, table: str) -> Any:
        return datasets.load_from_disk(self.current(table)).data.table

    def close(self) -> None:
        gc.collect()

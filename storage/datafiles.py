"""Data files: Parquet files of user columns plus each row's physical position, written once."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import stats
from .formats import DATA_DIR, POS_COLUMN
from .io import ObjectStore


@dataclass(frozen=True)
class WriteOptions:
    """Knobs for data files: rows per file and per Parquet row group, and the compression codec."""

    max_rows_per_file: int = 1_000_000
    row_group_size: int = 64 * 1024
    compression: str = "zstd"

    def to_json(self) -> dict[str, Any]:
        """For the dataset's metadata."""
        return {
            "max_rows_per_file": self.max_rows_per_file,
            "row_group_size": self.row_group_size,
            "compression": self.compression,
        }


def with_positions(table: pa.Table) -> pa.Table:
    """Append the physical position column used to apply deletion vectors after pushed-down filters."""
    return table.append_column(POS_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def write_data_file(
    store: ObjectStore, table: pa.Table, stat_fields: list[pa.Field], options: WriteOptions
) -> dict[str, Any]:
    """Write one data file and return its manifest row (path, rows, bytes, statistics)."""
    sink = io.BytesIO()
    physical = with_positions(table)
    pq.write_table(
        physical,
        sink,
        row_group_size=options.row_group_size,
        compression=options.compression,
        # Positions are 0..n-1: delta encoding stores them in almost no space.
        use_dictionary=[n for n in physical.column_names if n != POS_COLUMN],
        column_encoding={POS_COLUMN: "DELTA_BINARY_PACKED"},
        write_statistics=True,
    )
    data = sink.getvalue()
    path = f"{DATA_DIR}/{uuid.uuid4().hex}.parquet"
    store.write_bytes(path, data)
    row: dict[str, Any] = {
        "path": path,
        "rows": table.num_rows,
        "deleted": 0,
        "bytes": len(data),
        "dv": None,
        "dv_bytes": None,
    }
    row.update(stats.compute(table, stat_fields))
    return row


def read_positions(store: ObjectStore, path: str, positions: np.ndarray[Any, Any], columns: list[str]) -> pa.Table:
    """Rows at the given physical positions of one data file, in the order given.

    Only the row groups holding a wanted position are read (and only the asked-for columns).
    """
    fs, root = store.arrow_fs()
    pf = pq.ParquetFile(f"{root}/{path}", filesystem=fs)
    wanted = np.asarray(positions, dtype=np.int64)
    sizes = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    group_of = np.searchsorted(starts, wanted, side="right") - 1
    groups = np.unique(group_of)
    table = pf.read_row_groups([int(g) for g in groups], columns=columns)
    # Offset of each read group inside `table`: groups are read in ascending order and concatenated.
    offset_in_table = np.concatenate([[0], np.cumsum(sizes[groups])])[np.searchsorted(groups, group_of)]
    return table.take(pa.array(offset_in_table + wanted - starts[group_of]))

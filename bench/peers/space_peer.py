"""Google's Space (`space-datasets`): runs in its own venv (pyarrow 15, numpy<2, Ray 2.9 for its views).

Space stores index columns in Parquet and record fields in ArrayRecord, like Labelhouse. Its materialized
views refresh only through Ray, so the W6 job starts a local two-CPU Ray inside the worker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from space import Dataset, MaterializedView, RandomAccessDataSource, RayOptions

from .base import BLOB, KEY, VIEW_SCHEMA, Peer, RowReader, Unsupported, features, index_columns, where_expr

_ray_started = False


class SpaceConflict(Exception):
    """Space returned a FAILED job result: another writer committed first (it does not raise)."""


def _check(result: Any) -> None:
    state = getattr(result.state, "name", str(result.state))
    if state == "FAILED":
        raise SpaceConflict(result.error_message)


def ray_features(batch: dict[str, Any]) -> dict[str, Any]:
    """The W6 UDF in Ray's batch format (dicts of numpy arrays): same function, adapted at the edges."""
    out = features(pa.table(batch))
    return {c: out.column(c).to_numpy(zero_copy_only=False) for c in out.column_names}


def _ray() -> None:
    global _ray_started
    if not _ray_started:
        import ray
        import ray.data

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        _ray_started = True


# One Ray block per index file: the default (row-range blocks of the read batch size) made a 100k-row
# refresh take minutes, one tiny task per 16 rows.
_RAY = RayOptions(max_parallelism=2, enable_row_range_block=False)
_BATCH = 65_536


def _fit(table: pa.Table) -> pa.Table:
    """Space's schemas have no timestamp type: timestamps go in as int64 microseconds."""
    fields = [pa.field(f.name, pa.int64()) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


class SpacePeer(Peer):
    name = "space"
    version_of = "space-datasets"
    how: ClassVar[dict[str, str]] = {
        "create": "Dataset.create(record_fields=[image]) + local().append(): blobs to ArrayRecord",
        "random_access": "RandomAccessDataSource({'image': path}): the blob only, no label columns",
        "scan": "ds.local().read_all(filter_=expr)",
        "scan_duckdb": "no DuckDB integration",
        "types": "no timestamp type: the ts column is stored as int64 microseconds",
        "upsert": "ds.local().upsert(): its key filter grows with every key (10 keys ~1 s, 50 keys > 5 min)",
        "read": "ds.local().read_all(version=v)",
        "diff": "ds.local().diff(a, b): ADD rows and DELETE keys per snapshot",
        "history": "emulated: a filtered read of every version",
        "view": "Space MaterializedView refreshed with Ray (mv.ray().refresh()); full = a new view from "
        "scratch; the 1% change is applied as its inserts only, as its upsert by key does not finish",
        "concurrency": "snapshot-id check before commit; a FAILED job result is retried",
    }
    conflict_errors = (SpaceConflict,)

    def _ds(self, table: str) -> Dataset:
        return Dataset.load(self.path(table))

    def create(self, table: str, data: pa.Table, blob_columns: Sequence[str]) -> None:
        data = _fit(data)
        ds = Dataset.create(self.path(table), data.schema, primary_keys=[KEY], record_fields=list(blob_columns))
        _check(ds.local().append(data))

    def reader(self, table: str) -> RowReader:
        if BLOB not in self._ds(table).record_fields:
            raise Unsupported("random access reads record fields only")
        ra = RandomAccessDataSource({BLOB: self.path(table)})
        return RowReader(ra.__getitem__, ra.__getitems__, lambda: None)

    def scan(self, table: str, spec: dict[str, Any]) -> pa.Table:
        ds = self._ds(table)
        got = ds.local().read_all(filter_=where_expr(spec), fields=index_columns(ds.schema.names))
        return got if got is not None else pa.table({})

    def upsert(self, table: str, rows: pa.Table) -> None:
        _check(self._ds(table).local().upsert(_fit(rows)))

    def append(self, table: str, rows: pa.Table) -> None:
        _check(self._ds(table).local().append(_fit(rows)))

    def version(self, table: str) -> Any:
        return self._ds(table).storage.metadata.current_snapshot_id

    def read_version(self, table: str, version: Any) -> pa.Table:
        ds = self._ds(table)
        got = ds.local().read_all(version=version, fields=index_columns(ds.schema.names))
        return got if got is not None else ds.schema.empty_table()

    def lookup(self, table: str, key: int, version: Any) -> pa.Table:
        ds = self._ds(table)
        got = ds.local().read_all(filter_=pc.field(KEY) == key, version=version, fields=index_columns(ds.schema.names))
        return got if got is not None else ds.schema.empty_table()

    def diff(self, table: str, start: Any, end: Any) -> pa.Table:
        parts = []
        for change in self._ds(table).local().diff(start, end):
            kind = "insert" if change.type_.name == "ADD" else "delete"
            data = change.data
            parts.append(data.append_column("_change_type", pa.array([kind] * data.num_rows, pa.string())))
        return pa.concat_tables(parts, promote=True) if parts else pa.table({})

    # W6: Space's own materialized view --------------------------------------------------------------------------
    def apply_change(self, table: str, updates: pa.Table, inserts: pa.Table) -> None:
        self.append(table, inserts)

    def _materialize(self, source: str, location: str) -> MaterializedView:
        ds = self._ds(source)
        view = ds.map_batches(fn=ray_features, output_schema=VIEW_SCHEMA, input_fields=index_columns(ds.schema.names))
        return view.materialize(location)

    def _refresh(self, mv: MaterializedView) -> int:
        results = mv.ray(_RAY).refresh(batch_size=_BATCH)
        for r in results:
            _check(r)
        return sum(r.storage_statistics_update.num_rows for r in results if r.storage_statistics_update)

    def view_prepare(self) -> None:
        _ray()

    def view_create(self, source: str, view: str) -> None:
        self._refresh(self._materialize(source, self.path(view)))

    def view_refresh(self, source: str, view: str) -> dict[str, Any]:
        return {"rows_recomputed": self._refresh(MaterializedView.load(self.path(view)))}

    def view_recompute(self, source: str, view: str) -> dict[str, Any]:
        location = self.path(f"{view}-full-{len(os.listdir(self.root))}")
        return {"rows_recomputed": self._refresh(self._materialize(source, location))}

    def view_read(self, view: str) -> pa.Table:
        got = MaterializedView.load(self.path(view)).local().read_all()
        return got if got is not None else VIEW_SCHEMA.empty_table()

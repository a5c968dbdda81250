"""SQL over snapshots with DuckDB: each dataset is a view over a pyarrow dataset of one snapshot's files.

Nothing is copied into memory up front. DuckDB pushes projections and filters into the pyarrow dataset;
pyarrow skips whole data files by the manifest's min/max statistics (each file's guarantee) and row groups
by Parquet statistics, so a selective query opens only the files that may match.

Deleted rows never leave the scan: every file gets a virtual column `_lh_fid`, fixed to its number by its
guarantee, and the dataset carries the filter `(_lh_fid != k) | ~_lh_pos.isin(deleted_k)` for each file k
with a deletion vector. Pyarrow simplifies that filter per file against the guarantee, to the file's own
deletions (or to nothing), and applies it together with whatever DuckDB pushed down.

Record fields are not exposed to SQL (and neither are `_lh_*` columns): a view has the dataset's index
columns only. Blobs are not something SQL can filter or aggregate usefully, and reading them would defeat
the point of keeping them out of index files; select keys with SQL, then `ds.take(keys, columns=[...])`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from . import manifest as mf
from . import stats
from .errors import DatasetNotFoundError, InvalidInputError
from .formats import POS_COLUMN
from .scan import SnapshotFiles, content_key

if TYPE_CHECKING:
    from .catalog import Catalog

FILE_ID = "_lh_fid"
MAX_CACHED_SCANS = 64

_FORMAT = pads.ParquetFileFormat()
_scans: OrderedDict[str, pads.Dataset] = OrderedDict()
_scans_lock = threading.Lock()


def snapshot_dataset(snap: SnapshotFiles) -> pads.Dataset:
    """A pyarrow dataset of a snapshot's live rows (physical columns plus `_lh_fid`), deletions applied.

    Snapshots never change, so datasets are kept per process (building one costs ~1 ms per data file).
    """
    key = content_key(snap)
    with _scans_lock:
        dataset = _scans.get(key)
        if dataset is not None:
            _scans.move_to_end(key)
            return dataset
    dataset = _build(snap)
    with _scans_lock:
        _scans[key] = dataset
        while len(_scans) > MAX_CACHED_SCANS:
            _scans.popitem(last=False)
    return dataset


def _build(snap: SnapshotFiles) -> pads.Dataset:
    fs, root = snap.store.arrow_fs()
    fragments = []
    alive: pc.Expression | None = None
    for k, row in enumerate(snap.manifest.to_pylist()):
        this_file = pc.field(FILE_ID) == pa.scalar(k, pa.int64())
        fragments.append(
            _FORMAT.make_fragment(
                f"{root}/{row['path']}",
                filesystem=fs,
                partition_expression=stats.guarantee(row, snap.stat_fields) & this_file,
                file_size=row["bytes"],
            )
        )
        deleted = mf.deleted_positions(snap.store, row)
        if len(deleted):
            kept = ~this_file | ~pc.field(POS_COLUMN).isin(pa.array(deleted, pa.int64()))
            alive = kept if alive is None else alive & kept
    schema = snap.physical_schema.append(pa.field(FILE_ID, pa.int64()))
    dataset = pads.FileSystemDataset(fragments, schema, _FORMAT, fs)
    return dataset if alive is None else dataset.filter(alive)


@functools.cache
def _database(pid: int) -> Any:
    """This process's in-memory DuckDB (opening one costs tens of ms).

    Keyed by process id: a forked child opens its own, and never closes the parent's (whose threads it lacks).
    """
    import duckdb

    return duckdb.connect()


def quote(name: str) -> str:
    """A SQL identifier for any name (double quotes, embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def query(tables: Mapping[str, SnapshotFiles], sql: str) -> pa.Table:
    """Run `sql` with each snapshot in `tables` visible as a view under its name; the result as a table."""
    import duckdb

    # A cursor is a connection of its own: its registrations and temporary views are seen by no other query.
    con = _database(os.getpid()).cursor()
    try:
        for i, (name, snap) in enumerate(tables.items()):
            scan = f"_lh_scan_{i}"
            con.register(scan, snapshot_dataset(snap))
            columns = ", ".join(quote(f.name) for f in snap.schema if f.name not in snap.layout.record_fields)
            con.execute(f"CREATE TEMP VIEW {quote(name)} AS SELECT {columns} FROM {scan}")
        result = con.sql(sql)
        if result is None:
            raise InvalidInputError(f"SQL statement returned no rows to read: {sql!r}; run a query (SELECT ...)")
        table: pa.Table = result.to_arrow_table()
        return table
    except duckdb.Error as exc:
        raise InvalidInputError(
            f"SQL failed: {exc}. Tables here: {sorted(tables)} (record fields and _lh_* columns are not exposed)"
        ) from exc
    finally:
        con.close()


def referenced(sql: str, names: list[str]) -> list[str]:
    """Which of `names` the query mentions as tables (all of them if DuckDB cannot parse the query)."""
    import duckdb

    try:
        mentioned = {n.casefold() for n in duckdb.get_table_names(sql)}
    except duckdb.Error:
        return names  # the query itself will fail and report the parse error
    return [n for n in names if n.casefold() in mentioned]


def catalog_query(cat: Catalog, sql: str, versions: dict[str, Any]) -> pa.Table:
    """Run `sql` over the catalog's datasets by name, each at `versions[name]` (default: its main head)."""
    names = cat.datasets()
    unknown = sorted(set(versions) - set(names))
    if unknown:
        raise DatasetNotFoundError(f"versions= names {unknown}, which are not datasets in {cat.uri}; datasets: {names}")
    tables = {n: cat.dataset(n)._pinned(versions.get(n))[1] for n in referenced(sql, names)}
    return query(tables, sql)

"""Reading a snapshot: prune files by manifest statistics, push filters into Parquet, apply deletions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from . import manifest as mf
from . import stats
from .datafiles import Layout
from .errors import CorruptDatasetError, InvalidInputError
from .formats import POS_COLUMN
from .io import ObjectStore

FILE_COLUMN = "_lh_file"


@dataclass(frozen=True)
class SnapshotFiles:
    """The files of one snapshot as a reader needs them: the store, the schema and the manifest."""

    store: ObjectStore
    layout: Layout
    manifest: pa.Table
    stat_fields: list[pa.Field]

    @property
    def schema(self) -> pa.Schema:
        """The dataset's schema."""
        return self.layout.schema

    @property
    def physical_schema(self) -> pa.Schema:
        """Columns as stored in data files."""
        return self.layout.physical_schema


def content_key(snap: SnapshotFiles) -> str:
    """A name for a snapshot's content, for caches: data files and deletion vectors are never renamed or reused."""
    digest = hashlib.sha256(snap.store.uri.encode())
    for row in snap.manifest.select(["path", "dv"]).to_pylist():
        digest.update(f"\n{row['path']}:{row['dv']}".encode())
    return digest.hexdigest()[:32]


_FORMAT = pads.ParquetFileFormat()


def check_filter(snap: SnapshotFiles, filter: pc.Expression | None) -> None:
    """Refuse a filter naming unknown columns even when there is no file to read it against."""
    if filter is None:
        return
    try:
        snap.physical_schema.empty_table().filter(filter)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(
            f"filter {filter} cannot apply to columns {snap.schema.names} (record fields cannot be filtered): {exc}"
        ) from exc


def _selected(snap: SnapshotFiles, filter: pc.Expression | None) -> list[tuple[dict[str, Any], pads.Fragment]]:
    """Manifest rows and Arrow fragments of the files a filter may match."""
    check_filter(snap, filter)
    fs, root = snap.store.arrow_fs()
    rows = snap.manifest.to_pylist()
    if not rows:
        return []
    by_path: dict[str, dict[str, Any]] = {}
    fragments = []
    for row in rows:
        full = f"{root}/{row['path']}"
        by_path[full] = row
        fragments.append(
            _FORMAT.make_fragment(
                full,
                filesystem=fs,
                partition_expression=stats.guarantee(row, snap.stat_fields),
                file_size=row["bytes"],
            )
        )
    if filter is None:
        return [(by_path[f.path], f) for f in fragments]
    dataset = pads.FileSystemDataset(fragments, snap.physical_schema, _FORMAT, fs)
    try:
        kept = list(dataset.get_fragments(filter=filter))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"filter {filter} cannot apply to columns {snap.schema.names}: {exc}") from exc
    return [(by_path[f.path], f) for f in kept]


def pruned_files(snap: SnapshotFiles, filter: pc.Expression | None) -> list[str]:
    """Data files a read with `filter` opens after pruning by manifest statistics."""
    return [row["path"] for row, _fragment in _selected(snap, filter)]


def _file_filter(snap: SnapshotFiles, row: dict[str, Any], filter: pc.Expression | None) -> pc.Expression | None:
    deleted = mf.deleted_positions(snap.store, row)
    if len(deleted) == 0:
        return filter
    alive = ~pc.field(POS_COLUMN).isin(pa.array(deleted, type=pa.int64()))
    return alive if filter is None else filter & alive


def file_batches(
    snap: SnapshotFiles,
    columns: Sequence[str],
    filter: pc.Expression | None = None,
    batch_size: int | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(data file path, batch) for every live row matching `filter`; columns may include the position."""
    physical = snap.layout.physical_columns(columns)
    for row, fragment in _selected(snap, filter):
        kwargs: dict[str, Any] = {"columns": physical, "filter": _file_filter(snap, row, filter)}
        if batch_size:
            kwargs["batch_size"] = batch_size
        try:
            for batch in fragment.to_batches(schema=snap.physical_schema, **kwargs):
                if batch.num_rows:
                    resolved = snap.layout.resolve(pa.Table.from_batches([batch]), columns).combine_chunks()
                    yield row["path"], resolved.to_batches()[0]
        except FileNotFoundError as exc:
            raise CorruptDatasetError(
                f"{snap.store.uri}/{row['path']}: data file is missing; run ds.validate() and restore it or an "
                "earlier snapshot"
            ) from exc
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidInputError(f"cannot read {columns} with filter {filter}: {exc}") from exc


def count(snap: SnapshotFiles, filter: pc.Expression | None) -> int:
    """Live rows matching `filter`."""
    if filter is None:
        return mf.live_rows(snap.manifest)
    total = 0
    for row, fragment in _selected(snap, filter):
        f = _file_filter(snap, row, filter)
        total += fragment.scanner(schema=snap.physical_schema, filter=f, columns=[]).count_rows()
    return total


# Above this many keys an `isin` filter costs more than it saves: Arrow builds its hash set of the keys anew
# for every file it filters (a full view refresh spent seconds there), so callers match by one join instead.
ISIN_MAX_KEYS = 65_536


def key_filter(keys: pa.Table, exact: bool = True) -> pc.Expression:
    """A filter matching (a superset of) the given keys, with ranges so files can be pruned by statistics.

    With `exact=False` and more than ISIN_MAX_KEYS keys it keeps only the ranges: the caller joins.
    """
    expr: pc.Expression = pc.scalar(True)
    for name in keys.column_names:
        col = keys.column(name)
        field = pc.field(name)
        if stats.statable(pa.field(name, col.type)) and len(col):
            mm = pc.min_max(col)
            expr = expr & (field >= mm["min"]) & (field <= mm["max"])
        if exact or keys.num_rows <= ISIN_MAX_KEYS:
            expr = expr & field.isin(pc.unique(col))
    return expr


def locations(snap: SnapshotFiles, keys: list[str], filter: pc.Expression | None = None) -> pa.Table:
    """Key columns, row position and data file of every live row matching `filter`."""
    schema = pa.schema(
        [
            *(snap.schema.field(k) for k in keys),
            pa.field(POS_COLUMN, pa.int64()),
            pa.field(FILE_COLUMN, pa.string()),
        ]
    )
    parts = []
    for path, batch in file_batches(snap, [*keys, POS_COLUMN], filter):
        parts.append(
            pa.Table.from_batches([batch]).append_column(FILE_COLUMN, pa.array([path] * batch.num_rows, pa.string()))
        )
    return pa.concat_tables(parts).cast(schema) if parts else schema.empty_table()


def locate(snap: SnapshotFiles, keys: pa.Table) -> pa.Table:
    """Where the given keys live: key columns, row position and data file path, one row per live hit."""
    names = keys.column_names
    if keys.num_rows == 0:
        return locations(snap, names, pc.scalar(False))
    many = keys.num_rows > ISIN_MAX_KEYS
    hits = locations(snap, names, key_filter(keys, exact=not many))
    if len(names) > 1 or many:  # isin per column over-matches combinations of key values; ranges match more
        distinct = keys.group_by(names).aggregate([]) if many else keys  # one hit per live row, as isin gives
        hits = hits.join(distinct, keys=names, join_type="inner").select(hits.column_names)
    return hits

"""`labelhouse show`: rows of a dataset version."""

from __future__ import annotations

from typing import Annotated

import pyarrow as pa
import typer

from storage import Catalog, Dataset

from ..options import DEFAULT_CATALOG, CatalogOption, DatasetArgument, JsonOption, VersionOption, parse_version
from ..output import emit
from ..tables import records_table


def _reader(ds: Dataset, snapshot_id: int) -> pa.RecordBatchReader:
    """A stream of the snapshot's rows without record fields (blobs are read by address, not listed)."""
    schema = pa.schema([f for f in ds.schema if f.name not in ds.record_fields])
    return pa.RecordBatchReader.from_batches(schema, ds.read(columns=schema.names, version=snapshot_id))


def _head(reader: pa.RecordBatchReader, limit: int) -> pa.Table:
    """The first `limit` rows, reading no further than needed."""
    batches = []
    for batch in reader:
        if limit <= 0:
            break
        batches.append(batch.slice(0, limit))
        limit -= batches[-1].num_rows
    return pa.Table.from_batches(batches, schema=reader.schema)


def _where(reader: pa.RecordBatchReader, condition: str, limit: int) -> pa.Table:
    """The first `limit` rows matching a SQL condition, evaluated by DuckDB over the stream."""
    import duckdb  # only --where needs it; keeps every other command's startup fast

    con = duckdb.connect()
    con.register("snapshot_rows", reader)
    try:
        return con.sql(f"SELECT * FROM snapshot_rows WHERE {condition} LIMIT {limit}").to_arrow_table()
    except duckdb.Error as exc:
        raise typer.BadParameter(str(exc), param_hint="'--where'") from None
    finally:
        con.close()


def show(
    dataset: DatasetArgument,
    version: VersionOption = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Print at most this many rows.")] = 20,
    where: Annotated[
        str | None,
        typer.Option("--where", metavar="SQL", help="Only rows matching this SQL condition, e.g. \"label = 'cat'\"."),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Print rows of a dataset version (record fields are left out)."""
    ds = Catalog(catalog).dataset(dataset)
    snap = ds.snapshot(None if version is None else parse_version(version))
    reader = _reader(ds, snap.id)
    rows = _head(reader, limit) if where is None else _where(reader, where, limit)
    records = rows.to_pylist()
    scope = f"where {where}" if where else f"of {ds.count(version=snap.id)}"
    title = f"{ds.name} @ snapshot {snap.id}: {rows.num_rows} rows {scope}"
    data = {"dataset": ds.name, "snapshot_id": snap.id, "rows": records}
    emit(data, as_json, lambda: records_table(records, rows.column_names, title))

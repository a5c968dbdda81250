"""Turning user input (tables, batches, dicts of lists, iterables, key lists) into conformed Arrow tables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidInputError, SchemaMismatchError


def iter_tables(data: Any) -> Iterator[pa.Table]:
    """Yield the input as Arrow tables without materializing an iterable of batches."""
    if isinstance(data, pa.Table):
        yield data
    elif isinstance(data, pa.RecordBatch):
        yield pa.Table.from_batches([data])
    elif isinstance(data, Mapping):
        try:
            yield pa.table(dict(data))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise SchemaMismatchError(f"cannot build a table from the dict of columns: {exc}") from exc
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        for i, part in enumerate(data):
            if isinstance(part, pa.Table | pa.RecordBatch | Mapping):
                yield from iter_tables(part)
            else:
                raise InvalidInputError(
                    f"item {i} of the input iterable is a {type(part).__name__}; yield pa.RecordBatch, "
                    "pa.Table or dict of lists"
                )
    else:
        try:
            yield pa.table(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"cannot write a {type(data).__name__}: pass a pa.Table, pa.RecordBatch, dict of lists or an "
                "iterable of batches"
            ) from exc


def conform(table: pa.Table, schema: pa.Schema, primary_keys: Sequence[str]) -> pa.Table:
    """Reorder and cast `table` to `schema`; fill absent nullable columns; refuse anything else."""
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise SchemaMismatchError(
            f"input has columns the dataset does not: {extra}; dataset columns are {schema.names}"
        )
    if len(set(table.column_names)) != len(table.column_names):
        raise SchemaMismatchError(f"input has duplicate column names: {table.column_names}")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            if not field.nullable or field.name in primary_keys:
                raise SchemaMismatchError(
                    f"input lacks column {field.name!r}, which is a primary key or non-nullable; add it"
                )
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if not col.type.equals(field.type):
            try:
                col = col.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise SchemaMismatchError(
                    f"column {field.name!r} has type {col.type}, expected {field.type}, and does not cast "
                    f"safely ({exc}); convert it before writing"
                ) from exc
        if (not field.nullable or field.name in primary_keys) and col.null_count:
            first = pc.index(pc.is_null(col), True).as_py()
            what = "primary key" if field.name in primary_keys else "non-nullable"
            raise InvalidInputError(
                f"{col.null_count} null value(s) in {what} column {field.name!r} (first at input row {first}); "
                "every row needs a value there"
            )
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def rechunk(tables: Iterable[pa.Table], max_rows: int, max_bytes: int | None = None) -> Iterator[pa.Table]:
    """Regroup a stream of tables into tables of at most `max_rows` rows and about `max_bytes` bytes
    (bounded memory even when rows carry large blobs). Pieces are concatenated, not combined: copying
    them into one chunk would double the blobs in memory, and every writer takes chunked columns."""
    pending: list[pa.Table] = []
    rows = 0
    nbytes = 0
    for table in tables:
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        offset = 0
        while offset < table.num_rows:
            room = max_rows - rows
            if max_bytes is not None:
                room = min(room, max(1, (max_bytes - nbytes) // per_row))
            take = min(room, table.num_rows - offset)
            pending.append(table.slice(offset, take))
            rows += take
            nbytes += take * per_row
            offset += take
            if rows >= max_rows or (max_bytes is not None and nbytes >= max_bytes):
                yield pa.concat_tables(pending)
                pending, rows, nbytes = [], 0, 0
    if pending and rows:
        yield pa.concat_tables(pending)


def key_table(keys: Any, schema: pa.Schema, primary_keys: Sequence[str]) -> pa.Table:
    """Keys given as scalars, tuples, dicts or a table, as a table of the key columns."""
    key_schema = pa.schema([schema.field(k) for k in primary_keys])
    if isinstance(keys, pa.Table | pa.RecordBatch):
        table = pa.Table.from_batches([keys]) if isinstance(keys, pa.RecordBatch) else keys
        missing = [k for k in primary_keys if k not in table.column_names]
        if missing:
            raise InvalidInputError(f"key table lacks primary key column(s) {missing}")
        return conform(table.select(list(primary_keys)), key_schema, primary_keys)
    rows = list(keys)
    for r in rows:
        if isinstance(r, Mapping) and any(k not in r for k in primary_keys):
            raise InvalidInputError(f"key {r!r} lacks primary key column(s) {[k for k in primary_keys if k not in r]}")
    if len(primary_keys) == 1:
        values = [r[primary_keys[0]] if isinstance(r, Mapping) else r for r in rows]
        cols: dict[str, list[Any]] = {primary_keys[0]: values}
    else:
        cols = {k: [] for k in primary_keys}
        for r in rows:
            if isinstance(r, Mapping):
                items = [r.get(k) for k in primary_keys]
            elif isinstance(r, Sequence) and not isinstance(r, str | bytes) and len(r) == len(primary_keys):
                items = list(r)
            else:
                raise InvalidInputError(
                    f"key {r!r} does not match the primary key {list(primary_keys)}: pass tuples or dicts"
                )
            for k, v in zip(primary_keys, items, strict=True):
                cols[k].append(v)
    try:
        table = pa.table({k: pa.array(v) for k, v in cols.items()}) if rows else key_schema.empty_table()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"keys do not form a valid column: {exc}") from exc
    return conform(table, key_schema, primary_keys)


def duplicate_keys(keys: pa.Table) -> list[Any]:
    """Key values that occur more than once in `keys` (scalars for one key column, tuples otherwise)."""
    names = keys.column_names
    counts = keys.group_by(names, use_threads=False).aggregate([([], "count_all")])
    dups = counts.filter(pc.greater(counts.column("count_all"), 1)).select(names)
    return key_values(dups)


def key_values(keys: pa.Table) -> list[Any]:
    """Python values of a key table: scalars for a single key column, tuples for several."""
    cols = [keys.column(n).to_pylist() for n in keys.column_names]
    return cols[0] if len(cols) == 1 else list(zip(*cols, strict=True))

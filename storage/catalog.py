"""The Catalog: a directory (local or s3://) of datasets addressed by name."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from . import convert
from . import manifest as mf
from . import sql as sql_engine
from .arrow_cache import ArrowCache, ArrowCacheOptions
from .context import DatasetContext, DatasetMeta, RecordCacheOptions
from .datafiles import WriteOptions
from .dataset import DEFAULT_BRANCH, Dataset
from .errors import DatasetExistsError, DatasetNotFoundError, InvalidInputError, SchemaMismatchError
from .formats import (
    FORMAT_VERSION,
    META_FILE,
    RESERVED_PREFIX,
    check_format_version,
    decode_json,
    encode_json,
    log_name,
    utcnow,
)
from .io import ObjectStore, StoreWrapper, open_store, put_once
from .log import LogEntry
from .naming import check_name
from .vector_index import INDEX_FILE, VectorIndex
from .views.evaluate import Inputs
from .views.materialized import MaterializedView, infer_schema, read_definition, write_definition
from .views.plan import fingerprint
from .views.plan import root as view_root
from .views.plan import sources as view_sources
from .views.view import View

CATALOG_FILE = "_catalog.json"
RESERVED_COLUMNS = {"_change_type", "_snapshot_id", "_committed_at", "_distance", "_message", "_properties"}


def _key_type_ok(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_decimal(t)
    )


def check_definition(schema: Any, primary_keys: Sequence[str], record_fields: Sequence[str]) -> None:
    """Refuse a dataset definition that could not be stored or keyed correctly."""
    if not isinstance(schema, pa.Schema):
        raise SchemaMismatchError(f"schema must be a pyarrow.Schema, got {type(schema).__name__}")
    names = schema.names
    if not names:
        raise SchemaMismatchError("schema has no columns")
    if len(set(names)) != len(names):
        raise SchemaMismatchError(f"schema has duplicate column names: {names}")
    bad = [n for n in names if not n or n.startswith(RESERVED_PREFIX) or n in RESERVED_COLUMNS or "\x00" in n]
    if bad:
        raise SchemaMismatchError(
            f"column name(s) {bad} are reserved or empty (names starting with {RESERVED_PREFIX!r} and "
            f"{sorted(RESERVED_COLUMNS)} are Labelhouse's own); rename them"
        )
    if isinstance(primary_keys, str) or not primary_keys:
        raise SchemaMismatchError("primary_keys must be a non-empty list of column names, e.g. ['id']")
    for k in primary_keys:
        if k not in names:
            raise SchemaMismatchError(f"primary key {k!r} is not a column; columns are {names}")
        if not _key_type_ok(schema.field(k).type):
            raise SchemaMismatchError(
                f"primary key column {k!r} has type {schema.field(k).type}; keys must be integer, string, "
                "binary, date, timestamp or decimal (not float or nested)"
            )
    if len(set(primary_keys)) != len(primary_keys):
        raise SchemaMismatchError(f"primary_keys repeats a column: {list(primary_keys)}")
    if isinstance(record_fields, str):
        raise SchemaMismatchError("record_fields must be a list of column names")
    for r in record_fields:
        if r not in names:
            raise SchemaMismatchError(f"record field {r!r} is not a column; columns are {names}")
        if r in primary_keys:
            raise SchemaMismatchError(f"record field {r!r} is a primary key; keys are stored in index files")
    if len(set(record_fields)) != len(record_fields):
        raise SchemaMismatchError(f"record_fields repeats a column: {list(record_fields)}")


class Catalog:
    """Datasets by name under one root: a local directory or `s3://bucket/prefix`."""

    def __init__(
        self,
        uri: str | os.PathLike[str] = "./lakehouse",
        *,
        wrap_store: StoreWrapper | None = None,
        record_cache: RecordCacheOptions | None = None,
        arrow_cache: ArrowCacheOptions | None = None,
        **storage_options: Any,
    ) -> None:
        """Open the catalog at `uri`; `storage_options` configure S3 (endpoint_url, region, keys).

        `record_cache` bounds the local cache of record files read from S3 (directory, max_bytes).
        `arrow_cache` keeps decoded, memory-mapped copies of the data files reads touch (see arrow_cache);
        by default the directory in $LABELHOUSE_ARROW_CACHE if set, else none.
        `wrap_store` is applied to the root store once; every dataset, view and index store derives from
        the wrapped one through child(), so the wrapper sees every request (tests inject faults this way).
        It is not part of spec(): processes that reopen the catalog (Ray workers) get the plain store.
        """
        self._uri = os.fspath(uri)
        self._options = dict(storage_options)
        self._record_cache = record_cache
        arrow_options = arrow_cache or ArrowCacheOptions.from_env()
        self._arrow_cache = ArrowCache(arrow_options) if arrow_options else None
        store = open_store(self._uri, **storage_options)
        self._store: ObjectStore = store if wrap_store is None else wrap_store(store)
        self._open: dict[str, DatasetContext] = {}
        self._lock = threading.Lock()
        self._check_catalog_file()

    def __repr__(self) -> str:
        return f"Catalog({self._store.uri!r})"

    @property
    def uri(self) -> str:
        """Where the catalog lives."""
        return self._store.uri

    def spec(self) -> dict[str, Any]:
        """What another process needs to open this catalog (URI and storage options)."""
        return {"uri": self._uri, "options": dict(self._options)}

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> Catalog:
        """Open the catalog a spec() describes."""
        return Catalog(spec["uri"], **spec.get("options", {}))

    def _check_catalog_file(self) -> None:
        try:
            data = self._store.read_bytes(CATALOG_FILE)
        except FileNotFoundError:
            return
        check_format_version(decode_json(data, f"{self.uri}/{CATALOG_FILE}"), f"{self.uri}/{CATALOG_FILE}")

    def create_dataset(
        self,
        name: str,
        schema: pa.Schema,
        primary_keys: Sequence[str],
        record_fields: Sequence[str] | None = None,
        *,
        options: WriteOptions | None = None,
        exist_ok: bool = False,
    ) -> Dataset:
        """Create an empty dataset (snapshot 0 on branch `main`)."""
        check_name(name)
        record_fields = list(record_fields or [])
        check_definition(schema, primary_keys, record_fields)
        store = self._store.child(name)
        meta = DatasetMeta(schema, list(primary_keys), record_fields, utcnow(), options or WriteOptions())
        put_once(self._store, CATALOG_FILE, encode_json({"format_version": FORMAT_VERSION}))
        if not put_once(store, META_FILE, meta.to_json()):
            unfinished = self._unfinished_create(name, store, schema, list(primary_keys), record_fields)
            if unfinished is not None:
                return self._first_snapshot(name, store, unfinished)
            if exist_ok:
                existing = self.dataset(name)
                if not existing.schema.equals(schema) or existing.primary_keys != list(primary_keys):
                    raise DatasetExistsError(
                        f"dataset {name!r} exists with a different schema or primary keys; drop it or use another name"
                    )
                return existing
            raise DatasetExistsError(f"dataset {name!r} already exists in {self.uri}; open it with cat.dataset()")
        return self._first_snapshot(name, store, meta)

    def _unfinished_create(
        self, name: str, store: ObjectStore, schema: pa.Schema, keys: list[str], record_fields: list[str]
    ) -> DatasetMeta | None:
        """The metadata of a create_dataset that failed before snapshot 0, if it defined the same dataset."""
        if store.exists(log_name(0)):
            return None
        meta = DatasetMeta.from_json(store.read_bytes(META_FILE), f"{store.uri}/{META_FILE}")
        same = meta.schema.equals(schema) and meta.primary_keys == keys and meta.record_fields == record_fields
        return meta if same else None

    def _first_snapshot(self, name: str, store: ObjectStore, meta: DatasetMeta) -> Dataset:
        ctx = DatasetContext(name, store, meta, self._record_cache, self._arrow_cache)
        empty = mf.write(store, mf.empty(ctx.manifest_schema))
        first = LogEntry(
            snapshot_id=0,
            parent_id=None,
            branch=DEFAULT_BRANCH,
            created_at=meta.created_at,
            operation="create",
            commit_id=uuid.uuid4().hex,
            manifest=empty,
            summary={"rows": 0, "files": 0},
        )
        if not ctx.log.try_append(first):
            existing = ctx.log.load(0)
            # Two processes finishing one create (same metadata, so the same created_at) is not a conflict.
            if existing is None or existing.created_at != meta.created_at:
                raise DatasetExistsError(
                    f"dataset {name!r} has a log left from a dropped dataset of that name; drop() it again"
                )
        with self._lock:
            self._open[name] = ctx
        return Dataset(ctx)

    def dataset(self, name: str, branch: str = DEFAULT_BRANCH) -> Dataset:
        """Open a dataset (on a branch, default `main`)."""
        check_name(name)
        with self._lock:
            ctx = self._open.get(name)
        if ctx is None:
            try:
                ctx = DatasetContext.open(name, self._store.child(name), self._record_cache, self._arrow_cache)
            except FileNotFoundError as exc:
                raise DatasetNotFoundError(
                    f"no dataset {name!r} in {self.uri}; datasets here: {self.datasets()}"
                ) from exc
            with self._lock:
                ctx = self._open.setdefault(name, ctx)
        ds = Dataset(ctx)
        return ds if branch == DEFAULT_BRANCH else ds.branch(branch)

    def datasets(self) -> list[str]:
        """Names of the datasets in the catalog."""
        return [name for name in self._store.list_dirs() if self._store.exists(f"{name}/{META_FILE}")]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.datasets()

    def drop(self, name: str) -> None:
        """Delete a dataset and all its files. Its metadata goes first, so it vanishes in one step."""
        check_name(name)
        store = self._store.child(name)
        if not store.exists(META_FILE):
            raise DatasetNotFoundError(f"no dataset {name!r} in {self.uri}")
        store.delete(META_FILE)
        with self._lock:
            self._open.pop(name, None)
        for info in store.list_files():
            store.delete(info.path)

    # ----- SQL and imports ----------------------------------------------------------------------------

    def sql(self, query: str, versions: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a DuckDB query over the catalog's datasets and materialized views, each a view under its name.

        Each is read at its `main` head unless `versions` pins it ({name: snapshot id, tag, branch or
        datetime}). Record fields are not exposed.
        """
        return sql_engine.catalog_query(self, query, dict(versions or {}))

    def from_huggingface(
        self,
        name: str,
        hf_dataset: Any,
        primary_keys: Sequence[str],
        record_fields: Sequence[str] | None = None,
        *,
        options: WriteOptions | None = None,
    ) -> Dataset:
        """Create dataset `name` from a `datasets.Dataset`, streamed in batches into one snapshot (needs [hf])."""
        return convert.from_huggingface(self, name, hf_dataset, primary_keys, record_fields, options)

    def from_parquet(
        self,
        name: str,
        directory: str | os.PathLike[str],
        primary_keys: Sequence[str],
        record_fields: Sequence[str] | None = None,
        *,
        options: WriteOptions | None = None,
    ) -> Dataset:
        """Create dataset `name` from the Parquet files under `directory`, streamed into one snapshot."""
        return convert.from_parquet(self, name, directory, primary_keys, record_fields, options)

    # ----- views --------------------------------------------------------------------------------------

    def materialize(self, name: str, view: View, engine: str = "local", replace: bool = False) -> MaterializedView:
        """Store a view's output as a dataset named `name` and compute it (later: mv.refresh()).

        Materializing the same definition again refreshes the view. A different definition (plan or function
        version) of an existing view needs `replace=True`: the view keeps its versions and the next commit
        recomputes it from scratch; its output schema must stay the same.
        """
        if not isinstance(view, View):
            raise InvalidInputError(f"materialize() takes a View (ds.map_batches(...), ...), got {type(view).__name__}")
        datasets = {n: self.dataset(n) for n in view_sources(view.node)}
        inputs = Inputs(datasets, {n: ds.snapshot().id for n, ds in datasets.items()})
        schema, record_fields = infer_schema(view.node, inputs)
        keys = datasets[view_root(view.node).dataset].primary_keys
        record_fields = [r for r in record_fields if r in schema.names]
        try:
            ds = self.create_dataset(name, schema, keys, record_fields)
        except DatasetExistsError:
            ds = self._existing_view(name, view, schema, keys, record_fields, replace)
        node = read_definition(ds)
        if node is None or fingerprint(node) != fingerprint(view.node):
            write_definition(ds, view.node, replace=node is not None)
        mv = MaterializedView(self, name, ds, view.node)
        mv.refresh(engine=engine)
        return mv

    def _existing_view(
        self, name: str, view: View, schema: pa.Schema, keys: list[str], record_fields: list[str], replace: bool
    ) -> Dataset:
        """The dataset of an existing view of `name` to materialize `view` into, or DatasetExistsError.

        That is the same view (an earlier materialize may not have finished: resume it), a view redefined
        with `replace`, or the empty dataset of a materialize that failed before writing its definition.
        """
        ds = self.dataset(name)
        node = read_definition(ds)
        if node is None:
            if ds.schema.equals(schema) and ds.snapshot().id == 0:
                return ds
            raise DatasetExistsError(
                f"{name!r} already exists in {self.uri} as a dataset; drop it or pick another name"
            )
        if fingerprint(node) == fingerprint(view.node):
            return ds
        if not replace:
            raise DatasetExistsError(
                f"view {name!r} already exists in {self.uri} with another definition (plan or function version); "
                "pass replace=True to redefine it (recomputed from scratch), or pick another name"
            )
        if not ds.schema.equals(schema) or ds.primary_keys != keys or ds.record_fields != record_fields:
            raise SchemaMismatchError(
                f"view {name!r} stores {ds.schema} keyed by {ds.primary_keys}; the new definition outputs {schema} "
                f"keyed by {keys}: a redefinition must keep the output schema; drop the view and materialize it again"
            )
        return ds

    def materialized_view(self, name: str) -> MaterializedView:
        """Open a materialized view."""
        ds = self.dataset(name)
        node = read_definition(ds)
        if node is None:
            raise DatasetNotFoundError(f"{name!r} in {self.uri} is a dataset, not a materialized view")
        return MaterializedView(self, name, ds, node)

    def views(self, source: str | None = None) -> list[str]:
        """Names of the materialized views (those reading `source`, if given)."""
        out = []
        for name in self.datasets():
            node = read_definition(self.dataset(name))
            if node is not None and (source is None or source in view_sources(node)):
                out.append(name)
        return out

    # ----- vector indexes -----------------------------------------------------------------------------

    def create_vector_index(
        self, name: str, source: Dataset | MaterializedView | str, column: str, metric: str = "cos"
    ) -> VectorIndex:
        """Index a float-vector column of a dataset or materialized view, and build it."""
        check_name(name, "vector index")
        source_name = source if isinstance(source, str) else source.name
        ds = self.dataset(source_name)
        if column not in ds.schema.names:
            raise InvalidInputError(f"{source_name!r} has no column {column!r}; columns: {ds.schema.names}")
        typ = ds.schema.field(column).type
        if not (pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ) or pa.types.is_large_list(typ)) or not (
            pa.types.is_floating(typ.value_type)
        ):
            raise InvalidInputError(f"column {column!r} has type {typ}; a vector index needs a list of floats")
        if self._store.exists(f"{name}/{META_FILE}"):
            raise DatasetExistsError(f"{name!r} is a dataset in {self.uri}; pick another index name")
        idx = VectorIndex.create(self, name, self._store.child(name), source_name, column, metric)
        idx.refresh()
        return idx

    def vector_index(self, name: str) -> VectorIndex:
        """Open a vector index."""
        idx = VectorIndex.open(self, check_name(name, "vector index"), self._store.child(name))
        if idx is None:
            raise DatasetNotFoundError(f"no vector index {name!r} in {self.uri}")
        return idx

    def drop_vector_index(self, name: str) -> None:
        """Delete a vector index and its files. Its definition goes first, so it vanishes in one step."""
        index = self.vector_index(name)
        store = self._store.child(index.name)
        store.delete(INDEX_FILE)
        for info in store.list_files():
            store.delete(info.path)

    def vector_indexes(self, source: str | None = None) -> list[str]:
        """Names of the vector indexes (those over `source`, if given)."""
        out = []
        for name in self._store.list_dirs():
            idx = VectorIndex.open(self, name, self._store.child(name))
            if idx is not None and (source is None or idx.source == source):
                out.append(name)
        return out

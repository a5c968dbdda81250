"""Materialized views: a dataset holding a view's output, refreshed from the sources' change logs."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorruptDatasetError, InvalidInputError
from ..formats import FORMAT_VERSION, TRACE_DIR, TRACES_PROP, check_format_version, decode_json, encode_json
from ..io import put_once
from . import plan as planmod
from .evaluate import Inputs, Traces, affected, all_keys, evaluate, key_names, needs_trace, spine, stream
from .lease import RefreshLease
from .plan import MapBatches, Node, root

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..dataset import Dataset

VIEW_FILE = "_view.json"
SOURCES_PROP = "lh.view.sources"
PLAN_PROP = "lh.view.plan"
CHUNK_KEYS = 16_384


@dataclass(frozen=True)
class RefreshStats:
    """What a refresh did."""

    snapshot_id: int
    sources: dict[str, int]
    full: bool
    keys_recomputed: int
    rows_upserted: int
    rows_deleted: int
    seconds: float
    changed: bool


def infer_schema(node: Node, inputs: Inputs) -> tuple[pa.Schema, list[str]]:
    """The output schema and record fields of a plan (running it on a few rows when a function hides it)."""
    if isinstance(node, planmod.Source):
        ds = inputs.datasets[node.dataset]
        return ds.schema, ds.record_fields
    if isinstance(node, planmod.Filter):
        return infer_schema(node.child, inputs)
    if isinstance(node, MapBatches):
        if node.output_schema is not None:
            return node.output_schema, list(node.record_fields)
        keys = all_keys(node, inputs)
        # Growing samples: a filter before the map may drop the first rows, and the function may be costly.
        start, size = 0, 8
        while start < keys.num_rows:
            out = evaluate(node, keys.slice(start, size), inputs)
            if out.num_rows:
                return out.schema, list(node.record_fields)
            start, size = start + size, size * 4
        raise InvalidInputError(
            f"cannot infer the output of {node.fn}: it produced no rows from the source; pass output_schema= "
            "to map_batches"
        )
    left, left_rf = infer_schema(node.left, inputs)
    right, right_rf = infer_schema(node.right, inputs)
    right_keys = inputs.datasets[root(node.right).dataset].primary_keys
    extra = [f if node.how == "inner" else f.with_nullable(True) for f in right if f.name not in right_keys]
    return pa.schema([*left, *extra]), [*left_rf, *(r for r in right_rf if r not in right_keys)]


class MaterializedView:
    """A view's output stored as a dataset with its own versions; refresh() applies only what changed."""

    def __init__(self, catalog: Catalog, name: str, dataset: Dataset, node: Node) -> None:
        self._catalog = catalog
        self.name = name
        self.dataset = dataset
        self.node = node

    def __repr__(self) -> str:
        return f"MaterializedView({self.name!r}, sources={self.sources})"

    @property
    def sources(self) -> list[str]:
        """Datasets the view reads."""
        return planmod.sources(self.node)

    def read_all(self, **kwargs: Any) -> pa.Table:
        """The view's rows (same arguments as Dataset.read_all)."""
        return self.dataset.read_all(**kwargs)

    def reflects(self, version: Any = None) -> dict[str, int]:
        """The source snapshot ids a version of the view was computed from ({} before the first refresh)."""
        props = self.dataset.snapshot(version).properties
        return {k: int(v) for k, v in json.loads(props.get(SOURCES_PROP, "{}")).items()}

    def _inputs(self, version: Any) -> Inputs:
        datasets = {n: self._catalog.dataset(n) for n in self.sources}
        if isinstance(version, dict):
            unknown = set(version) - set(datasets)
            if unknown:
                raise InvalidInputError(f"view {self.name!r} does not read {sorted(unknown)}; it reads {self.sources}")
            pinned = {n: ds.snapshot(version.get(n)).id for n, ds in datasets.items()}
        elif version is not None and len(datasets) > 1:
            raise InvalidInputError(f"view {self.name!r} reads {self.sources}: pass version={{name: version}}")
        else:
            pinned = {n: ds.snapshot(version).id for n, ds in datasets.items()}
        return Inputs(datasets, pinned)

    def recompute(self, version: Any = None) -> pa.Table:
        """The view computed from scratch at source versions (default: what the view reflects now)."""
        inputs = self._inputs(version if version is not None else (self.reflects() or None))
        return evaluate(self.node, None, inputs)

    def refresh(self, version: Any = None, engine: str = "local", full: bool = False) -> RefreshStats:
        """Bring the view up to source `version` (default: the sources' heads) in one idempotent commit.

        Only keys the sources changed since the last refresh are recomputed, reading changed rows where the
        change logs say they are; when the plan or a function version changed (or `full=True`) the view is
        recomputed and its content replaced. engine="ray" (or a Ray address) evaluates functions on Ray workers.
        """
        started = time.perf_counter()
        with RefreshLease(self.dataset._ctx.store, self.name) as lease:
            inputs = self._inputs(version)
            head = self.dataset.snapshot()
            fp = planmod.fingerprint(self.node)
            before = {k: int(v) for k, v in json.loads(head.properties.get(SOURCES_PROP, "{}")).items()}
            same_plan = head.properties.get(PLAN_PROP) == fp
            if before == inputs.pinned and same_plan and not full:
                return RefreshStats(head.id, inputs.pinned, False, 0, 0, 0, time.perf_counter() - started, False)
            old_traces = read_traces(self.dataset, head)
            keys = affected(self.node, before, inputs, old_traces) if same_plan and before and not full else None
            rows, traces = _run(self._catalog, self.node, keys, inputs, engine)
            if keys is not None:
                traces = _updated_traces(old_traces, traces, keys, key_names(self.node, inputs))
            trace_paths = write_traces(self.dataset, traces)
            properties = {
                SOURCES_PROP: encode_json(inputs.pinned).decode(),
                PLAN_PROP: fp,
                TRACES_PROP: encode_json(trace_paths).decode(),
            }
            # The head is part of the key: the same sources can be due again later (full=True, a refresh back
            # to an older version, a function version flipped back), and must not hit an earlier refresh.
            idempotency_key = f"refresh:{self.name}:{head.id}:{fp}:{encode_json(inputs.pinned).decode()}"
            message = f"refresh from {inputs.pinned}"
            try:
                lease.check()
                if keys is None:
                    snap = self.dataset.replace(_checked(rows, lease), idempotency_key, message, properties)
                else:
                    snap = self.dataset.apply_changes(
                        _table(rows, self.dataset.schema),
                        delete_keys=keys.select(key_names(self.node, inputs)),
                        idempotency_key=idempotency_key,
                        message=message,
                        properties=properties,
                    )
            except BaseException:
                if self.dataset._ctx.log.find(idempotency_key=idempotency_key) is None:
                    for path in trace_paths.values():
                        self.dataset._ctx.store.delete(path)
                raise
            source = root(self.node).dataset
            return RefreshStats(
                snap.id,
                inputs.pinned,
                keys is None,
                inputs.datasets[source].count(version=inputs.pinned[source]) if keys is None else keys.num_rows,
                snap.summary.get("rows_inserted", 0) + snap.summary.get("rows_updated", 0),
                snap.summary.get("rows_deleted", 0),
                time.perf_counter() - started,
                True,
            )


def _table(parts: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = list(parts)
    return pa.concat_tables(tables, promote_options="permissive") if tables else schema.empty_table()


def _checked(parts: Iterable[pa.Table], lease: RefreshLease) -> Iterator[pa.Table]:
    """`parts`, then a check that the lease is still held: a streamed recompute computes while it writes, so
    the check before the commit call comes before most of the work."""
    yield from parts
    lease.check()


def _updated_traces(old: Traces, new: Traces, keys: pa.Table, names: list[str]) -> Traces:
    """Traces after an incremental refresh: the recomputed keys' entries replaced by what they traced now."""
    redone = keys.select(names)
    out = {}
    for i, before in old.items():
        kept = before.join(redone, keys=names, join_type="left anti")
        out[i] = pa.concat_tables([kept, new[i].cast(kept.schema)]) if i in new else kept
    return out


def read_traces(dataset: Dataset, head: Any) -> Traces:
    """The join traces a view version recorded (a missing one makes affected() ask for a full recompute)."""
    store = dataset._ctx.store
    out = {}
    for i, path in json.loads(head.properties.get(TRACES_PROP, "{}")).items():
        try:
            out[int(i)] = pq.read_table(io.BytesIO(store.read_bytes(path)))
        except FileNotFoundError:
            continue  # removed by hand: recomputing is the way back
    return out


def write_traces(dataset: Dataset, traces: Traces) -> dict[str, str]:
    """Store traces (one Parquet file each, never overwritten) and return their paths by join index."""
    store = dataset._ctx.store
    paths = {}
    for i, table in sorted(traces.items()):
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        path = f"{TRACE_DIR}/{uuid.uuid4().hex}.parquet"
        store.write_bytes(path, sink.getvalue())
        paths[str(i)] = path
    return paths


def _merge_traces(into: Traces, part: Traces) -> None:
    for i, table in part.items():
        into[i] = pa.concat_tables([into[i], table]) if i in into else table


def _run(
    catalog: Catalog, node: Node, keys: pa.Table | None, inputs: Inputs, engine: str
) -> tuple[Iterable[pa.Table], Traces]:
    """Evaluate the plan for `keys` (None = all), locally or in chunks on Ray workers; output parts and join
    traces. A local full recompute without traced joins streams: its parts are computed as they are written."""
    traces: Traces = {}
    if engine == "local":
        if keys is None and not any(needs_trace(j, inputs) for j in spine(node)):
            return stream(node, inputs), traces
        return [evaluate(node, keys, inputs, traces)], traces
    if keys is None:
        keys = all_keys(node, inputs)  # with their locations: each task reads its rows where they are
    import ray  # optional dependency: only engine="ray" needs it

    if not ray.is_initialized():
        ray.init(address=None if engine == "ray" else engine, include_dashboard=False, log_to_driver=False)
    task: Any = ray.remote(_evaluate_chunk)
    spec = catalog.spec()
    plan_json = planmod.to_json(node)
    located = ray.put(inputs.located)
    chunks = [keys.slice(i, CHUNK_KEYS) for i in range(0, keys.num_rows, CHUNK_KEYS)] or [keys]
    refs = [task.remote(spec, plan_json, inputs.pinned, located, chunk) for chunk in chunks]
    parts = []
    for part, chunk_traces in ray.get(refs):
        parts.append(part)
        _merge_traces(traces, chunk_traces)
    return parts, traces


def _evaluate_chunk(
    spec: dict[str, Any], plan_json: dict[str, Any], pinned: dict[str, int], located: Any, keys: pa.Table
) -> tuple[pa.Table, Traces]:
    """Runs on a Ray worker: reopen the catalog and evaluate one chunk of keys."""
    from ..catalog import Catalog

    catalog = Catalog.from_spec(spec)
    node = planmod.from_json(plan_json)
    inputs = Inputs({n: catalog.dataset(n) for n in planmod.sources(node)}, pinned, dict(located))
    traces: Traces = {}
    return evaluate(node, keys, inputs, traces), traces


def write_definition(dataset: Dataset, node: Node, replace: bool = False) -> None:
    """Store the plan next to the view's data (when the view is created, or redefined with `replace`).

    Versions of the view record the fingerprint of the plan they were computed with, so the first refresh
    after a redefinition recomputes everything.
    """
    body = encode_json({"format_version": FORMAT_VERSION, "plan": planmod.to_json(node)})
    if replace:
        dataset._ctx.store.write_bytes(VIEW_FILE, body)
    elif not put_once(dataset._ctx.store, VIEW_FILE, body):
        raise CorruptDatasetError(f"dataset {dataset.name!r} already holds a view definition")


def read_definition(dataset: Dataset) -> Node | None:
    """The plan of a materialized view, or None for a plain dataset."""
    store = dataset._ctx.store
    try:
        data = store.read_bytes(VIEW_FILE)
    except FileNotFoundError:
        return None
    obj = decode_json(data, f"{store.uri}/{VIEW_FILE}")
    check_format_version(obj, f"{store.uri}/{VIEW_FILE}")
    return planmod.from_json(obj["plan"])

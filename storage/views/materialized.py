"""Materialized views: a dataset holding a view's output, refreshed from the sources' change logs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import CorruptDatasetError, InvalidInputError
from ..formats import FORMAT_VERSION, check_format_version, decode_json, encode_json
from ..io import put_once
from . import plan as planmod
from .evaluate import Inputs, affected, all_keys, evaluate
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
        return evaluate(self.node, all_keys(self.node, inputs), inputs)

    def refresh(self, version: Any = None, engine: str = "local", full: bool = False) -> RefreshStats:
        """Bring the view up to source `version` (default: the sources' heads) in one idempotent commit.

        Only keys the sources changed since the last refresh are recomputed, unless the plan or a function
        version changed (or `full=True`). engine="ray" (or a Ray address) evaluates functions on Ray workers.
        """
        started = time.perf_counter()
        with RefreshLease(self.dataset._ctx.store, self.name):
            inputs = self._inputs(version)
            head = self.dataset.snapshot()
            fp = planmod.fingerprint(self.node)
            before = {k: int(v) for k, v in json.loads(head.properties.get(SOURCES_PROP, "{}")).items()}
            if before == inputs.pinned and head.properties.get(PLAN_PROP) == fp and not full:
                return RefreshStats(head.id, inputs.pinned, False, 0, 0, 0, time.perf_counter() - started, False)
            keys = (
                None
                if full or not before or head.properties.get(PLAN_PROP) != fp
                else affected(self.node, before, inputs)
            )
            is_full = keys is None
            if keys is None:
                keys = all_keys(self.node, inputs)
                stale = self.dataset.read_all(columns=self.dataset.primary_keys)
            else:
                stale = keys
            rows = _run(self._catalog, self.node, keys, inputs, engine)
            snap = self.dataset.apply_changes(
                rows if rows.num_rows else self.dataset.schema.empty_table(),
                delete_keys=stale,
                # The head is part of the key: the same sources can be due again later (full=True, a refresh back
                # to an older version, a function version flipped back), and must not hit an earlier refresh.
                idempotency_key=f"refresh:{self.name}:{head.id}:{fp}:{encode_json(inputs.pinned).decode()}",
                message=f"refresh from {inputs.pinned}",
                properties={SOURCES_PROP: encode_json(inputs.pinned).decode(), PLAN_PROP: fp},
            )
            return RefreshStats(
                snap.id,
                inputs.pinned,
                is_full,
                keys.num_rows,
                snap.summary.get("rows_inserted", 0) + snap.summary.get("rows_updated", 0),
                snap.summary.get("rows_deleted", 0),
                time.perf_counter() - started,
                True,
            )


def _run(catalog: Catalog, node: Node, keys: pa.Table, inputs: Inputs, engine: str) -> pa.Table:
    """Evaluate the plan for `keys`, locally or in chunks on Ray workers."""
    if engine == "local":
        return evaluate(node, keys, inputs)
    import ray  # optional dependency: only engine="ray" needs it

    if not ray.is_initialized():
        ray.init(address=None if engine == "ray" else engine, include_dashboard=False, log_to_driver=False)
    task: Any = ray.remote(_evaluate_chunk)
    spec = catalog.spec()
    plan_json = planmod.to_json(node)
    chunks = [keys.slice(i, CHUNK_KEYS) for i in range(0, keys.num_rows, CHUNK_KEYS)] or [keys]
    refs = [task.remote(spec, plan_json, inputs.pinned, chunk) for chunk in chunks]
    parts: list[pa.Table] = ray.get(refs)
    return pa.concat_tables(parts, promote_options="permissive")


def _evaluate_chunk(
    spec: dict[str, Any], plan_json: dict[str, Any], pinned: dict[str, int], keys: pa.Table
) -> pa.Table:
    """Runs on a Ray worker: reopen the catalog and evaluate one chunk of keys."""
    from ..catalog import Catalog

    catalog = Catalog.from_spec(spec)
    node = planmod.from_json(plan_json)
    inputs = Inputs({n: catalog.dataset(n) for n in planmod.sources(node)}, pinned)
    return evaluate(node, keys, inputs)


def write_definition(dataset: Dataset, node: Node) -> None:
    """Store the plan next to the view's data (once, when the view is created)."""
    body = encode_json({"format_version": FORMAT_VERSION, "plan": planmod.to_json(node)})
    if not put_once(dataset._ctx.store, VIEW_FILE, body):
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

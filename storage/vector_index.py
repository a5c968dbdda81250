"""Vector indexes over a float-vector column of a dataset or materialized view, built incrementally.

An index lives in the catalog beside the datasets (`<name>/_index.json` + `_log/<seq>.json`); each log
entry names the usearch HNSW file and the key->label table that reflect one source snapshot, so a search
can be pinned to a version and joined back to the source at that version. Refresh applies the source's
change log: removed and updated keys leave the graph, new and updated vectors join it.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .changeset import net_between
from .errors import CorruptDatasetError, InvalidInputError, StorageError, VersionNotFoundError
from .formats import FORMAT_VERSION, check_format_version, decode_json, encode_json, utcnow
from .io import ObjectStore, put_once
from .views.lease import RefreshLease

if TYPE_CHECKING:
    from .catalog import Catalog
    from .dataset import Dataset

INDEX_FILE = "_index.json"
LABEL = "_label"
DISTANCE = "_distance"
METRICS = ("cos", "l2sq", "ip")


@dataclass(frozen=True)
class IndexRefreshStats:
    """What an index refresh did."""

    source_snapshot: int
    full: bool
    added: int
    removed: int
    size: int
    seconds: float
    changed: bool


def _vectors(column: pa.ChunkedArray | pa.Array, keys: pa.Table, name: str) -> npt.NDArray[np.float32]:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.empty((0, 0), np.float32)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        bad = int(np.nonzero(lengths != lengths[0])[0][0])
        raise InvalidInputError(
            f"vector column {name!r} mixes lengths ({sorted(set(lengths.tolist()))[:5]}); row with key "
            f"{keys.slice(bad, 1).to_pylist()[0]} differs: every vector must have the same dimension"
        )
    flat = np.asarray(pc.list_flatten(arr).to_numpy(zero_copy_only=False), dtype=np.float32)
    return flat.reshape(len(arr), int(lengths[0]))


class VectorIndex:
    """An approximate nearest-neighbour index (usearch HNSW) kept in step with its source."""

    def __init__(self, catalog: Catalog, name: str, store: ObjectStore, definition: dict[str, Any]) -> None:
        self._catalog = catalog
        self.name = name
        self._store = store
        self.source = str(definition["source"])
        self.column = str(definition["column"])
        self.metric = str(definition["metric"])

    def __repr__(self) -> str:
        return f"VectorIndex({self.name!r}, source={self.source!r}, column={self.column!r}, metric={self.metric!r})"

    @staticmethod
    def create(catalog: Catalog, name: str, store: ObjectStore, source: str, column: str, metric: str) -> VectorIndex:
        """Write the definition of a new index."""
        if metric not in METRICS:
            raise InvalidInputError(f"metric must be one of {METRICS}, got {metric!r}")
        definition = {"format_version": FORMAT_VERSION, "source": source, "column": column, "metric": metric}
        if not store.put_if_absent(INDEX_FILE, encode_json(definition)):
            raise StorageError(f"a vector index named {name!r} already exists; open it with cat.vector_index()")
        return VectorIndex(catalog, name, store, definition)

    @staticmethod
    def open(catalog: Catalog, name: str, store: ObjectStore) -> VectorIndex | None:
        """Open an existing index, or None if `store` holds none."""
        try:
            data = store.read_bytes(INDEX_FILE)
        except FileNotFoundError:
            return None
        definition = decode_json(data, f"{store.uri}/{INDEX_FILE}")
        check_format_version(definition, f"{store.uri}/{INDEX_FILE}")
        return VectorIndex(catalog, name, store, definition)

    # ----- log ----------------------------------------------------------------------------------------

    def _entries(self) -> list[dict[str, Any]]:
        out = []
        for info in sorted(self._store.list_files("_log"), key=lambda i: i.path):
            entry = decode_json(self._store.read_bytes(info.path), f"{self._store.uri}/{info.path}")
            check_format_version(entry, info.path)
            out.append(entry)
        return out

    def versions(self) -> pa.Table:
        """One row per refresh: seq, source_snapshot, size, added, removed, full, created_at."""
        cols = ["seq", "source_snapshot", "size", "added", "removed", "full", "created_at"]
        return pa.Table.from_pylist([{c: e[c] for c in cols} for e in self._entries()])

    def reflects(self) -> int | None:
        """The source snapshot the newest refresh reflects (None before the first refresh)."""
        entries = self._entries()
        return int(entries[-1]["source_snapshot"]) if entries else None

    def _source(self) -> Dataset:
        return self._catalog.dataset(self.source)

    # ----- refresh ------------------------------------------------------------------------------------

    def refresh(self, version: Any = None, full: bool = False) -> IndexRefreshStats:
        """Bring the index up to source `version` (default head) from the change log; full=True rebuilds."""
        started = time.perf_counter()
        with RefreshLease(self._store, self.name):
            src = self._source()
            target = src.snapshot(version).id
            entries = self._entries()
            last = entries[-1] if entries else None
            if last is not None and last["source_snapshot"] == target and not full:
                return IndexRefreshStats(target, False, 0, 0, last["size"], time.perf_counter() - started, False)
            changed = None if last is None or full else self._changed_keys(src, int(last["source_snapshot"]), target)
            if changed is None:
                index, keys, added, removed, next_label = self._build(src, target)
            else:
                index, keys, added, removed, next_label = self._update(src, target, last, changed)  # type: ignore[arg-type]
            entry = self._write(index, keys, target, added, removed, next_label, changed is None, len(entries))
            return IndexRefreshStats(
                target, changed is None, added, removed, entry["size"], time.perf_counter() - started, True
            )

    def _changed_keys(self, src: Dataset, start: int, end: int) -> pa.Table | None:
        ctx = src._ctx
        try:
            return net_between(ctx, ctx.log.get(start), ctx.log.get(end)).select(src.primary_keys)
        except StorageError:
            return None  # the reflected snapshot was expired: rebuild

    def _rows(self, src: Dataset, version: int, keys: pa.Table | None) -> pa.Table:
        cols = [*src.primary_keys, self.column]
        rows = (
            src.read_all(columns=cols, version=version)
            if keys is None
            else src.take(keys, columns=cols, version=version)
        )
        return rows.filter(pc.is_valid(rows.column(self.column)))

    def _new_index(self, ndim: int) -> Any:
        from usearch.index import Index

        return Index(ndim=ndim, metric=self.metric, dtype="f32")

    def _build(self, src: Dataset, version: int) -> tuple[Any, pa.Table, int, int, int]:
        rows = self._rows(src, version, None)
        keys = rows.select(src.primary_keys)
        vectors = _vectors(rows.column(self.column), keys, self.column)
        labels = np.arange(rows.num_rows, dtype=np.uint64)
        index = self._new_index(vectors.shape[1] if rows.num_rows else 1)
        if rows.num_rows:
            index.add(labels, vectors)
        return index, keys.append_column(LABEL, pa.array(labels, pa.uint64())), rows.num_rows, 0, rows.num_rows

    def _update(
        self, src: Dataset, version: int, last: dict[str, Any], changed: pa.Table
    ) -> tuple[Any, pa.Table, int, int, int]:
        index = self._load_index(str(last["index"])).copy()  # the cached one serves searches of older versions
        keys = self._load_keys(str(last["keys"]))
        pks = src.primary_keys
        marked = changed.append_column("_lh_changed", pa.array(np.ones(changed.num_rows, bool)))
        joined = keys.join(marked, keys=pks, join_type="left outer")
        gone = joined.filter(pc.is_valid(joined.column("_lh_changed")))
        kept = joined.filter(pc.is_null(joined.column("_lh_changed"))).select([*pks, LABEL])
        if gone.num_rows:
            index.remove(gone.column(LABEL).to_numpy())
        rows = self._rows(src, version, changed)
        next_label = int(last["next_label"])
        labels = np.arange(next_label, next_label + rows.num_rows, dtype=np.uint64)
        if rows.num_rows:
            vectors = _vectors(rows.column(self.column), rows.select(pks), self.column)
            if len(index) == 0 and index.ndim != vectors.shape[1]:
                index = self._new_index(vectors.shape[1])
            elif index.ndim != vectors.shape[1]:  # usearch would only say "dimensions don't match"
                raise InvalidInputError(
                    f"vector column {self.column!r} of {self.source!r} has {vectors.shape[1]} dimensions in changed "
                    f"rows (first key {rows.select(pks).slice(0, 1).to_pylist()[0]}) but index {self.name!r} holds "
                    f"{index.ndim}: fix those rows, or rebuild with refresh(full=True) if the model changed"
                )
            index.add(labels, vectors)
        fresh = rows.select(pks).append_column(LABEL, pa.array(labels, pa.uint64()))
        return (
            index,
            pa.concat_tables([kept.cast(fresh.schema), fresh]),
            rows.num_rows,
            gone.num_rows,
            next_label + rows.num_rows,
        )

    def _write(
        self, index: Any, keys: pa.Table, target: int, added: int, removed: int, next_label: int, full: bool, seq: int
    ) -> dict[str, Any]:
        stem = uuid.uuid4().hex
        fd, tmp = tempfile.mkstemp(suffix=".usearch")
        os.close(fd)
        try:
            index.save(tmp)
            self._store.put_file(f"files/{stem}.usearch", tmp)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        sink = io.BytesIO()
        pq.write_table(keys, sink)
        self._store.write_bytes(f"files/{stem}.keys.parquet", sink.getvalue())
        entry = {
            "format_version": FORMAT_VERSION,
            "seq": seq,
            "source_snapshot": target,
            "index": f"files/{stem}.usearch",
            "keys": f"files/{stem}.keys.parquet",
            "size": keys.num_rows,
            "added": added,
            "removed": removed,
            "next_label": next_label,
            "full": full,
            "created_at": utcnow().isoformat(),
        }
        if not put_once(self._store, f"_log/{seq:020d}.json", encode_json(entry)):
            raise StorageError(f"index {self.name!r} was refreshed concurrently; retry the refresh")
        return entry

    # ----- search -------------------------------------------------------------------------------------

    def _load_index(self, path: str) -> Any:
        return _load_index(self._store, path)

    def _load_keys(self, path: str) -> pa.Table:
        data = self._store.read_bytes(path)
        try:
            return pq.read_table(io.BytesIO(data))
        except pa.ArrowInvalid as exc:
            raise CorruptDatasetError(f"{self._store.uri}/{path}: index key table is unreadable ({exc})") from exc

    def _entry_for(self, version: Any) -> dict[str, Any]:
        entries = self._entries()
        if not entries:
            raise VersionNotFoundError(f"vector index {self.name!r} has not been refreshed yet; call refresh()")
        latest: dict[str, Any] = entries[-1]
        if version is None:
            return latest
        snapshot = self._source().snapshot(version).id
        for entry in reversed(entries):
            if entry["source_snapshot"] == snapshot:
                found: dict[str, Any] = entry
                return found
        raise VersionNotFoundError(
            f"vector index {self.name!r} was never refreshed at {self.source!r} snapshot {snapshot}; it reflects "
            f"{sorted({e['source_snapshot'] for e in entries})}: refresh(version=...) first"
        )

    def search(
        self,
        vector: Any,
        k: int = 10,
        version: Any = None,
        filter: pc.Expression | None = None,
        exact: bool = False,
    ) -> pa.Table:
        """The k nearest rows: primary key columns and `_distance`, nearest first.

        `version` pins the source snapshot the index reflects; `filter` (an expression over the source)
        restricts candidates exactly, by scoring the matching rows' vectors directly.
        """
        entry = self._entry_for(version)
        index = self._load_index(str(entry["index"]))
        keys = self._load_keys(str(entry["keys"]))
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if len(keys) and query.shape[0] != index.ndim:
            raise InvalidInputError(f"query has {query.shape[0]} dimensions; index {self.name!r} has {index.ndim}")
        if k <= 0 or len(keys) == 0:
            return keys.drop_columns([LABEL]).append_column(DISTANCE, pa.array([], pa.float32())).slice(0, 0)
        if filter is not None:
            src = self._source()
            allowed = src.read_all(filter=filter, columns=src.primary_keys, version=int(entry["source_snapshot"]))
            labels = allowed.join(keys, keys=src.primary_keys, join_type="inner").column(LABEL).to_numpy()
            found, distances = _score(index, labels, query, self.metric, k)
        else:
            matches = index.search(query, min(k, len(keys)), exact=exact)
            found, distances = np.asarray(matches.keys, np.uint64), np.asarray(matches.distances, np.float32)
        order = pa.Table.from_arrays(
            [pa.array(found, pa.uint64()), pa.array(distances, pa.float32()), pa.array(np.arange(len(found)))],
            names=[LABEL, DISTANCE, "_lh_rank"],
        )
        hits = keys.join(order, keys=LABEL, join_type="inner").sort_by("_lh_rank")
        return hits.drop_columns([LABEL, "_lh_rank"])


def _score(
    index: Any, labels: npt.NDArray[Any], query: npt.NDArray[np.float32], metric: str, k: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    """Exact top-k among `labels`, with usearch's distance definitions."""
    if len(labels) == 0:
        return np.empty(0, np.uint64), np.empty(0, np.float32)
    vectors = np.asarray(index.get(labels.astype(np.uint64)), np.float32).reshape(len(labels), -1)
    if metric == "l2sq":
        dist = ((vectors - query) ** 2).sum(axis=1)
    elif metric == "ip":
        dist = 1.0 - vectors @ query
    else:
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)
        dist = 1.0 - (vectors @ query) / np.where(norms == 0, 1.0, norms)
    top = np.argsort(dist, kind="stable")[:k]
    return labels[top].astype(np.uint64), dist[top].astype(np.float32)


@lru_cache(maxsize=16)
def _load_index(store: ObjectStore, path: str) -> Any:
    """Index files are immutable: load each once per process (memory-mapped when the store is local)."""
    from usearch.index import Index

    local = store.local_path(path)
    tmp = None
    if local is None:
        data = store.read_bytes(path)
        fd, tmp = tempfile.mkstemp(suffix=".usearch")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        local = tmp
    try:
        index = Index.restore(local, view=False)
    except RuntimeError as exc:  # how usearch reports a damaged file
        raise CorruptDatasetError(f"{store.uri}/{path}: index file is unreadable ({exc})") from exc
    finally:
        if tmp is not None:
            os.unlink(tmp)
    if index is None:
        raise CorruptDatasetError(f"{store.uri}/{path}: not a usearch index file")
    return index

"""Vector indexes: incremental refresh against a model and a from-scratch index, pinned versions, filters,
ANN recall, an index over a materialized view, and the errors bad input gets.

Vectors are random normal, so exact-search distances have no ties and result orders are comparable.
"""

from __future__ import annotations

import shutil
import tempfile
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import view_udfs as u
from _model import Layout, Model, Row
from _views import ITEMS
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from storage import Catalog, Dataset, InvalidInputError, VectorIndex, VersionNotFoundError

DIM = 8
VECTORS = Layout(
    "vectors",
    pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            ("group", pa.string()),
            ("vec", pa.list_(pa.float32())),  # null: the row is not indexed
        ]
    ),
    ("id",),
)
QUERIES = np.random.default_rng(1234).standard_normal((4, DIM)).astype(np.float32)
K = 5
Hits = list[tuple[int, float]]  # (id, distance), nearest first


def cosine_hits(rows: list[Row], query: npt.NDArray[np.float32], k: int) -> Hits:
    """Plain numpy top-k by cosine distance (usearch's "cos": 1 - cosine similarity)."""
    rows = [r for r in rows if r["vec"] is not None]
    if not rows:
        return []
    vectors = np.array([r["vec"] for r in rows], np.float64)
    q = query.astype(np.float64)
    dist = 1.0 - vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    order = np.argsort(dist, kind="stable")[:k]
    return [(rows[i]["id"], float(dist[i])) for i in order]


def hits(table: pa.Table) -> Hits:
    """A search result as (id, distance) pairs."""
    return list(zip(table.column("id").to_pylist(), table.column("_distance").to_pylist(), strict=True))


def assert_same_hits(actual: Hits, expected: Hits) -> None:
    """Same keys in the same order; distances equal up to float32 rounding."""
    assert [key for key, _ in actual] == [key for key, _ in expected]
    np.testing.assert_allclose([d for _, d in actual], [d for _, d in expected], atol=1e-4)


class IndexMachine(RuleBasedStateMachine):
    """One dataset of vectors, its index and a model; random commits, refreshes and pinned searches."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(dir=base))
        self.catalog = Catalog(self.tmp / "lake")
        self.ds = self.catalog.create_dataset("vectors", VECTORS.schema, primary_keys=["id"])
        self.model = Model(VECTORS)
        self.idx: VectorIndex | None = None
        self.fresh_names = count()
        self.pinned: dict[int, list[Hits]] = {}  # source snapshot -> exact results of QUERIES at it

    def rows(self, ids: list[int], seed: int, nulls: bool) -> list[Row]:
        rng = np.random.default_rng(seed)
        return [
            {
                "id": i,
                "group": "ab"[i % 2],
                "vec": None if nulls and i % 5 == 0 else rng.standard_normal(DIM).astype(np.float32).tolist(),
            }
            for i in ids
        ]

    @initialize(ids=st.lists(st.integers(0, 29), unique=True, min_size=1, max_size=12), seed=st.integers(0, 2**32))
    def create(self, ids: list[int], seed: int) -> None:
        self.ds.append(VECTORS.table(self.rows(ids, seed, nulls=False)))
        self.model.upsert(self.rows(ids, seed, nulls=False))
        self.idx = self.catalog.create_vector_index("knn", self.ds, "vec", metric="cos")
        self.check()

    @rule(
        op=st.sampled_from(["upsert", "upsert", "delete", "restore"]),
        ids=st.lists(st.integers(0, 29), unique=True, max_size=6),
        seed=st.integers(0, 2**32),
        nulls=st.booleans(),
        data=st.data(),
    )
    def commit(self, op: str, ids: list[int], seed: int, nulls: bool, data: st.DataObject) -> None:
        if op == "upsert":
            rows = self.rows(ids, seed, nulls)
            snap, expected = self.ds.upsert(VECTORS.table(rows)), self.model.upsert(rows)
        elif op == "delete":
            snap, expected = self.ds.delete(keys=ids), self.model.delete_keys((i,) for i in ids)
        else:
            version = data.draw(st.integers(0, self.model.head_id), label="version")
            snap, expected = self.ds.restore(version), self.model.restore(version)
        assert snap.id == expected

    @rule()
    def refresh(self) -> None:
        assert self.idx is not None
        stats = self.idx.refresh()
        assert stats.source_snapshot == self.model.head_id
        assert not stats.full  # incremental: the change log reaches back to the last refresh
        assert self.idx.refresh().changed is False  # idempotent
        self.check()

    @rule(data=st.data())
    def search_pinned_version(self, data: st.DataObject) -> None:
        assert self.idx is not None
        version = data.draw(st.sampled_from(sorted(self.pinned)), label="version")
        for query, expected in zip(QUERIES, self.pinned[version], strict=True):
            assert_same_hits(hits(self.idx.search(query, k=K, version=version, exact=True)), expected)

    def check(self) -> None:
        """The index at the head equals the model, a from-scratch index, and is exact under a filter."""
        assert self.idx is not None
        live = list(self.model.head.values())
        indexed = {r["id"] for r in live if r["vec"] is not None}
        fresh = self.catalog.create_vector_index(f"fresh{next(self.fresh_names)}", self.ds, "vec", metric="cos")
        results = []
        for query in QUERIES:
            got = hits(self.idx.search(query, k=K, exact=True))
            assert_same_hits(got, cosine_hits(live, query, K))
            assert_same_hits(got, hits(fresh.search(query, k=K, exact=True)))
            results.append(got)
            # Deleted (and null-vector) keys never come back, whatever k asks for.
            assert {key for key, _ in hits(self.idx.search(query, k=len(indexed) + 3, exact=True))} == indexed
            assert {key for key, _ in hits(self.idx.search(query, k=K))} <= indexed
            in_a = [r for r in live if r["group"] == "a"]
            assert_same_hits(
                hits(self.idx.search(query, k=K, filter=pc.field("group") == "a")), cosine_hits(in_a, query, K)
            )
        self.pinned[self.model.head_id] = results

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def test_index_matches_model(tmp_path: Path) -> None:
    run_state_machine_as_test(
        lambda: IndexMachine(tmp_path),
        settings=settings(
            max_examples=8,
            stateful_step_count=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
            phases=[Phase.explicit, Phase.reuse, Phase.generate],  # see test_views: shrinking takes minutes
        ),
    )


# ----- ANN quality after incremental changes ----------------------------------------------------------------


def random_rows(rng: np.random.Generator, ids: range | list[int], dim: int) -> pa.Table:
    vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
    return pa.table(
        {"id": pa.array(list(ids), pa.int64()), "group": ["ab"[i % 2] for i in ids], "vec": list(vectors)},
        schema=VECTORS.schema,
    )


def test_ann_recall_after_one_percent_changes(catalog: Catalog) -> None:
    rng = np.random.default_rng(7)
    n, dim = 3000, 32
    ds = catalog.create_dataset("vectors", VECTORS.schema, primary_keys=["id"])
    ds.append(random_rows(rng, range(n), dim))
    idx = catalog.create_vector_index("knn", ds, "vec", metric="cos")
    next_id = n
    for _ in range(3):  # three rounds of 1% updates, 1% deletes and 1% inserts, each refreshed incrementally
        ds.upsert(random_rows(rng, rng.choice(n, n // 100, replace=False).tolist(), dim))
        ds.delete(keys=rng.choice(n, n // 100, replace=False).tolist())
        ds.append(random_rows(rng, range(next_id, next_id + n // 100), dim))
        next_id += n // 100
        stats = idx.refresh()
        assert not stats.full and stats.added >= n // 100
    fresh = catalog.create_vector_index("fresh", ds, "vec", metric="cos")
    recalls = []
    for query in rng.standard_normal((50, dim)).astype(np.float32):
        exact = hits(idx.search(query, k=10, exact=True))
        assert_same_hits(exact, hits(fresh.search(query, k=10, exact=True)))
        approx = {key for key, _ in hits(idx.search(query, k=10))}
        recalls.append(len(approx & {key for key, _ in exact}) / 10)
    assert np.mean(recalls) >= 0.95


# ----- versions, joins back to the source, an index over a view ---------------------------------------------


def test_pinned_search_joins_back_to_that_version(catalog: Catalog) -> None:
    rng = np.random.default_rng(3)
    ds = catalog.create_dataset("vectors", VECTORS.schema, primary_keys=["id"])
    old = ds.append(random_rows(rng, range(50), DIM))
    idx = catalog.create_vector_index("knn", ds, "vec")
    query = QUERIES[0]
    before = idx.search(query, k=5, exact=True)
    ds.delete(keys=before.column("id").to_pylist()[:2])  # the two nearest rows go away
    ds.upsert(random_rows(rng, before.column("id").to_pylist()[2:], DIM))  # the others move
    idx.refresh()
    assert idx.search(query, k=5, exact=True).column("id").to_pylist() != before.column("id").to_pylist()
    pinned = idx.search(query, k=5, version=old.id, exact=True)
    assert hits(pinned) == hits(before)  # the old index file still answers for the old snapshot
    rows = ds.take(pinned.select(["id"]), version=old.id)  # and joins back to the source at that version
    assert rows.column("id").to_pylist() == pinned.column("id").to_pylist()
    assert idx.versions().column("source_snapshot").to_pylist() == [old.id, ds.snapshot().id]
    with pytest.raises(VersionNotFoundError, match="refresh"):
        idx.search(query, version=old.id + 1)  # a snapshot the index never reflected


def test_index_over_materialized_view(catalog: Catalog) -> None:
    items = catalog.create_dataset("items", ITEMS.schema, primary_keys=["id"])
    items.append(ITEMS.table([{"id": i, "label": "abc"[i % 3], "score": i % 4, "cat_id": None} for i in range(24)]))
    mv = catalog.materialize("item_vectors", items.map_batches(u.label_vectors, u.VECTOR_SCHEMA))
    idx = catalog.create_vector_index("knn", mv, "vec")
    items.upsert(
        ITEMS.table([{"id": i, "label": None if i % 2 else "z", "score": 1, "cat_id": None} for i in range(6)])
    )
    items.delete(keys=[20, 21])
    mv.refresh()
    assert not idx.refresh().full
    expected = [{"id": r["id"], "vec": u.label_vector_row(r)} for r in items.read_all().to_pylist()]
    for query in QUERIES:
        assert_same_hits(hits(idx.search(query, k=K, exact=True)), cosine_hits(expected, query, K))


# ----- bad input ---------------------------------------------------------------------------------------------


def vectors_dataset(catalog: Catalog, vectors: list[Any], vec_type: pa.DataType | None = None) -> Dataset:
    schema = VECTORS.schema if vec_type is None else VECTORS.schema.set(2, pa.field("vec", vec_type))
    ds = catalog.create_dataset("vectors", schema, primary_keys=["id"])
    ds.append(pa.table({"id": range(len(vectors)), "group": ["a"] * len(vectors), "vec": vectors}, schema=schema))
    return ds


def test_query_of_wrong_dimension(catalog: Catalog) -> None:
    ds = vectors_dataset(catalog, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    idx = catalog.create_vector_index("knn", ds, "vec")
    with pytest.raises(InvalidInputError, match="query has 2 dimensions; index 'knn' has 3"):
        idx.search([1.0, 0.0])


def test_mixed_lengths_are_refused_naming_the_row(catalog: Catalog) -> None:
    ds = vectors_dataset(catalog, [[1.0, 0.0], [0.0, 1.0, 0.5], [1.0, 1.0]])
    with pytest.raises(InvalidInputError, match=r"mixes lengths.*\{'id': 1\}"):
        catalog.create_vector_index("knn", ds, "vec")


def test_dimension_change_in_incremental_refresh_is_refused(catalog: Catalog) -> None:
    ds = vectors_dataset(catalog, [[1.0, 0.0], [0.0, 1.0]])
    idx = catalog.create_vector_index("knn", ds, "vec")
    ds.upsert(pa.table({"id": [7], "group": ["a"], "vec": [[1.0, 2.0, 3.0]]}, schema=VECTORS.schema))
    with pytest.raises(InvalidInputError, match=r"3 dimensions.*\{'id': 7\}.*holds 2"):
        idx.refresh()
    assert len(idx.versions()) == 1  # nothing committed
    ds.delete(keys=[7])
    assert idx.refresh().changed


@pytest.mark.parametrize(
    ("column", "vec_type", "message"),
    [
        ("group", None, "type string; a vector index needs a list of floats"),
        ("vec", pa.list_(pa.int64()), "type list<item: int64>; a vector index needs a list of floats"),
        ("embedding", None, "has no column 'embedding'"),
    ],
)
def test_not_a_float_vector_column(catalog: Catalog, column: str, vec_type: Any, message: str) -> None:
    ds = vectors_dataset(catalog, [[1, 2], [3, 4]], vec_type)
    with pytest.raises(InvalidInputError, match=message):
        catalog.create_vector_index("knn", ds, column)


def test_unknown_metric(catalog: Catalog) -> None:
    ds = vectors_dataset(catalog, [[1.0, 2.0]])
    with pytest.raises(InvalidInputError, match="metric must be one of"):
        catalog.create_vector_index("knn", ds, "vec", metric="hamming")

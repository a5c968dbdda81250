"""The suite's input data, written once per run as Arrow IPC files that every engine's worker reads.

Files rather than regenerating in each worker: the Space venv runs another numpy and pyarrow, and every
engine must see byte-identical rows. Keys are 0..n-1, clustered as ingests usually are, so a row's key
is also its index (W2 asks engines without a row-index API for keys instead).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bench._common import label_table

BLOB = "image"


@dataclass(frozen=True)
class Sizes:
    """How big each workload's data is (the issue's sizes, or the smoke run's)."""

    blob_rows: int = 20_000
    blob_kb: int = 50
    reads: int = 10_000
    label_rows: int = 1_000_000
    change_fraction: float = 0.01  # W4, W6
    commits: int = 20  # W5
    commit_fraction: float = 0.001
    w7_writers: int = 4
    w7_rounds: int = 10
    w7_shared_keys: int = 5
    w7_append_rows: int = 20
    w7_base_rows: int = 1_000


QUICK = Sizes(blob_rows=2_000, blob_kb=50, reads=1_000, label_rows=100_000, commits=6, w7_rounds=3)


def write(path: str, table: pa.Table) -> str:
    """An IPC file of `table` in batches of at most 1,000 rows (so no Arrow buffer nears 2 GB)."""
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=1_000):
            w.write_batch(batch)
    return path


def with_blobs(table: pa.Table, blob_bytes: int, seed: int) -> pa.Table:
    """`table` plus an incompressible blob per row (like an encoded image)."""
    n = table.num_rows
    data = pa.py_buffer(np.random.default_rng(seed).bytes(n * blob_bytes))
    offsets = pa.py_buffer(np.arange(0, (n + 1) * blob_bytes, blob_bytes, dtype=np.int64).tobytes())
    blobs = pa.Array.from_buffers(pa.large_binary(), n, [None, offsets, data]).cast(pa.binary())
    return table.append_column(BLOB, blobs)


def change_set(n: int, k: int, insert_base: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """`k` changed rows of an n-row label table: k/2 updates of random existing keys, k/2 new keys."""
    rng = np.random.default_rng(seed)
    half = k // 2
    updates = label_table(half, seed=seed).set_column(
        0, "id", pa.array(np.sort(rng.choice(n, half, replace=False)), pa.int64())
    )
    inserts = label_table(k - half, start=insert_base, seed=seed)
    return updates, inserts


def _const(table: pa.Table) -> Callable[[], pa.Table]:
    return lambda: table


class Inputs:
    """Paths of the run's input files under `directory` (created on first use)."""

    def __init__(self, directory: str, sizes: Sizes) -> None:
        self.dir = directory
        self.sizes = sizes
        os.makedirs(directory, exist_ok=True)

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.arrow")

    def _cached(self, name: str, make: Callable[[], pa.Table]) -> str:
        path = self._path(name)
        if not os.path.exists(path):
            write(path, make())
        return path

    def blobs(self) -> str:
        """W1: the blob table."""
        s = self.sizes
        return self._cached("blobs", lambda: with_blobs(label_table(s.blob_rows), s.blob_kb * 1024, seed=1))

    def labels(self) -> str:
        """W3-W6: the label table."""
        return self._cached("labels", lambda: label_table(self.sizes.label_rows))

    def indices(self) -> str:
        """W2: shuffled distinct row indices."""
        s = self.sizes
        perm = np.random.default_rng(2).permutation(s.blob_rows)[: s.reads]
        return self._cached("indices", lambda: pa.table({"i": pa.array(perm, pa.int64())}))

    def change(self, table: str, rows: int, fraction: float, rep: int, blob_kb: int = 0) -> dict[str, str]:
        """A change set of `fraction` of a `rows`-row table for repetition `rep` (new keys never reused)."""
        k = max(2, int(rows * fraction))
        base = rows + rep * k  # inserts of later repetitions never collide with earlier ones
        out = {}
        parts = zip(("updates", "inserts"), change_set(rows, k, base, seed=100 + rep), strict=True)
        for i, (kind, part) in enumerate(parts):
            name = f"{table}-{kind}-{rep}"
            # Distinct blobs for the two halves: equal ones would let a column encoder store them once.
            table_part = with_blobs(part, blob_kb * 1024, seed=200 + 10 * rep + i) if blob_kb else part
            out[kind] = self._cached(name, _const(table_part))
        return out

    def commits(self) -> list[str]:
        """W5: `commits` upserts of 0.1% of the label table each (half updates, half inserts), every one
        updating the hot key."""
        s = self.sizes
        n, k = s.label_rows, max(10, int(s.label_rows * s.commit_fraction))
        paths = []
        for c in range(s.commits):
            rng = np.random.default_rng(300 + c)
            keys = np.unique(np.append(rng.choice(n, k // 2 - 1, replace=False), self.hot_key))
            updates = label_table(len(keys), seed=400 + c).set_column(0, "id", pa.array(keys, pa.int64()))
            inserts = label_table(k - k // 2, start=n + c * k, seed=500 + c)
            paths.append(self._cached(f"commit-{c}", _const(pa.concat_tables([updates, inserts]))))
        return paths

    @property
    def hot_key(self) -> int:
        """The key every W5 commit edits, whose history is read."""
        return self.sizes.label_rows // 3

    def template(self) -> str:
        """W7: rows the writers relabel with their own keys."""
        return self._cached("template", lambda: label_table(max(self.sizes.w7_append_rows, 64), seed=9))

    def w7_base(self) -> str:
        """W7: the table the writers start from."""
        return self._cached("w7-base", lambda: label_table(self.sizes.w7_base_rows))

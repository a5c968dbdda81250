"""The view function bench/views.py materializes (a module of its own: views load functions by import path,
and a script's functions live in `__main__`, which no other process can import)."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DIM = 32
COST_ENV = "LH_BENCH_ROW_COST"  # "sleep" (default) or "cpu"; read in every process that runs the function
ROW_SECONDS = 0.001
EMBEDDED = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("embedding", pa.list_(pa.float32()))])
_FREQS = np.random.default_rng(0).uniform(0.5, 5.0, (6, DIM)).astype(np.float32)


def slow_embed(table: pa.Table) -> pa.Table:
    """(id, embedding): a deterministic 32-d vector from each row's numbers, at ~1 ms of cost per row.

    The cost stands in for a model: time.sleep per batch ("sleep": like waiting on a GPU or a service,
    and stable on a busy machine) or a pure-Python busy loop per row ("cpu": competes for the cores).
    """
    n = table.num_rows
    if os.environ.get(COST_ENV, "sleep") == "cpu":
        for _ in range(n):
            end = time.perf_counter() + ROW_SECONDS
            while time.perf_counter() < end:
                pass
    else:
        time.sleep(ROW_SECONDS * n)
    label = pc.cast(pc.utf8_length(table.column("label")), pa.float32()).to_numpy(zero_copy_only=False)
    inputs = np.stack(
        [table.column(c).to_numpy().astype(np.float32) for c in ("x", "y", "w", "h", "score")] + [label], axis=1
    )
    vectors = np.sin((inputs / [1000, 1000, 100, 100, 1, 10]).astype(np.float32) @ _FREQS)
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), DIM)
    embedding = flat.cast(EMBEDDED.field("embedding").type)
    return pa.table({"id": table.column("id"), "embedding": embedding}, schema=EMBEDDED)

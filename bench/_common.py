"""Shared helpers for the benchmark scripts: synthetic label tables, timing, and table printing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

console = Console()


def label_table(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    """`n` rows of a 10-column label table with ids start..start+n-1 (clustered, as ingests usually are)."""
    rng = np.random.default_rng(seed + start)
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "item": pa.array([f"item-{i:09d}" for i in ids]),
            "label": pa.array(rng.choice(["car", "person", "bike", "dog", "cat"], n)),
            "annotator": pa.array(rng.choice([f"user{i}" for i in range(20)], n)),
            "x": rng.random(n) * 1000,
            "y": rng.random(n) * 1000,
            "w": rng.random(n) * 100,
            "h": rng.random(n) * 100,
            "score": rng.random(n),
            "ts": pa.array(ids * 1_000_000, pa.timestamp("us")),
        }
    )


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median wall seconds over `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def dir_bytes(path: str) -> int:
    """Total bytes of the files under `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(path) for f in fs)


def show(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a rich table."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v) for v in r])
    console.print(table)

"""iter_diff() holds a batch of rows at a time, however many row images the change logs keep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage import Catalog, WriteOptions

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("text", pa.string())])
WIDTH = 2_000  # bytes of text per row: images, not keys or locations, are what a pool holds

# Run in a new interpreter: Arrow's peak allocation is process-wide, and building the dataset raises it.
_PEAK = """
import json, sys
import pyarrow as pa
from storage import Catalog
ds = Catalog(sys.argv[1]).dataset("wide")
start, end, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pool = pa.default_memory_pool()
before = pool.bytes_allocated()
parts = ds.iter_diff(start, end, batch_size=batch) if batch else iter([ds.diff(start, end)])
rows = sum(part.num_rows for part in parts)
print(json.dumps({"rows": rows, "peak": pool.max_memory() - before}))
"""


def _rows(keys: np.ndarray, version: int) -> pa.Table:
    text = [f"{version}-{k}-".ljust(WIDTH, "x") for k in keys.tolist()]
    return pa.table({"id": keys, "text": text}, schema=SCHEMA)


def _peak(root: Path, start: int, end: int, batch: int) -> dict[str, int]:
    command = [sys.executable, "-c", _PEAK, str(root), str(start), str(end), str(batch)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    peak: dict[str, int] = json.loads(done.stdout)
    return peak


def test_iter_diff_peak_memory_is_a_batch_not_the_range(tmp_path: Path) -> None:
    ds = Catalog(tmp_path / "lake").create_dataset("wide", SCHEMA, ["id"], options=WriteOptions(log_row_images=True))
    base = ds.append(_rows(np.arange(4_000), 0)).id
    rng = np.random.default_rng(7)
    for version in range(1, 21):
        ds.upsert(_rows(rng.choice(4_000, 200, replace=False), version))
    head = ds.snapshot().id
    images = 20 * 200 * 2 * WIDTH  # pre- and post-images the logs hold
    for start, end in ((base, head), (head, base)):
        whole = _peak(tmp_path / "lake", start, end, 0)
        batched = _peak(tmp_path / "lake", start, end, 64)
        assert batched["rows"] == whole["rows"] > 4_000
        # A batch of 64 keys is 128 rows, 0.25 MB of text; joining the pool would copy every image (16 MB).
        assert batched["peak"] < images / 8, (batched, whole)
        assert batched["peak"] < whole["peak"] / 8, (batched, whole)

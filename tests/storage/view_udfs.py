"""View functions the view tests reference by import path (views store "module:function", never pickles).

Each function has a plain-Python twin (`*_row`) that the tests' model uses, so the engine's incremental
results are compared with an obviously right row-by-row computation. Functions that misbehave on purpose
(block, fail) are steered by environment variables, because a view function only ever sees its table.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Row = dict[str, Any]

# Tests set these in the process that refreshes (spawned children inherit the environment).
FAIL_ON_LABEL = "LH_TEST_FAIL_ON_LABEL"  # tag_items raises on a row whose label equals this value
GATE_DIR = "LH_TEST_GATE_DIR"  # gated_tag_items waits for GATE_DIR/release after creating GATE_DIR/entered

TAGGED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("cat_id", pa.int64()),
        pa.field("tag", pa.string()),
        pa.field("score2", pa.int64()),
    ]
)


def tag_items(table: pa.Table) -> pa.Table:
    """items -> TAGGED_SCHEMA: tag = label + "!" and score2 = 10 * score + 1 (nulls stay null)."""
    bad = os.environ.get(FAIL_ON_LABEL)
    if bad is not None and bad in table.column("label").to_pylist():
        raise RuntimeError(f"tag_items: refusing label {bad!r} (injected failure)")
    return pa.table(
        {
            "id": table.column("id"),
            "label": table.column("label"),
            "cat_id": table.column("cat_id"),
            "tag": pc.binary_join_element_wise(table.column("label"), pa.scalar("!"), ""),
            "score2": pc.add(pc.multiply(table.column("score"), 10), 1),
        }
    )


def tag_items_row(row: Row) -> Row:
    """Plain-Python twin of tag_items."""
    label, score = row["label"], row["score"]
    return {
        "id": row["id"],
        "label": label,
        "cat_id": row["cat_id"],
        "tag": None if label is None else label + "!",
        "score2": None if score is None else 10 * score + 1,
    }


def tag_items_v2(table: pa.Table) -> pa.Table:
    """A changed tag_items: the tests materialize it under a new version string to force a full recompute."""
    out = tag_items(table)
    return out.set_column(out.schema.get_field_index("tag"), "tag", pc.utf8_upper(out.column("tag")))


def tag_items_v2_row(row: Row) -> Row:
    """Plain-Python twin of tag_items_v2."""
    out = tag_items_row(row)
    return {**out, "tag": None if out["tag"] is None else out["tag"].upper()}


def gated_tag_items(table: pa.Table) -> pa.Table:
    """tag_items that signals it is running and then waits to be released (holds a refresh open)."""
    gate = Path(os.environ[GATE_DIR])
    (gate / "entered").touch()
    deadline = time.monotonic() + 60
    while not (gate / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return tag_items(table)


def score2_not_multiple_of_3(table: pa.Table) -> pa.Array:
    """Filter on tag_items' output: score2 % 3 != 0 (a null score2 gives null, so the row is dropped)."""
    score2 = table.column("score2")
    # Integer division truncates toward zero; the remainder is zero exactly when Python's % is.
    return pc.not_equal(pc.subtract(score2, pc.multiply(pc.divide(score2, 3), 3)), 0)


def score2_not_multiple_of_3_row(row: Row) -> bool:
    """Plain-Python twin of score2_not_multiple_of_3."""
    return row["score2"] is not None and row["score2"] % 3 != 0


def label_not_null(table: pa.Table) -> pa.Array:
    """Filter: rows with a label."""
    return pc.is_valid(table.column("label"))


def label_not_null_row(row: Row) -> bool:
    """Plain-Python twin of label_not_null."""
    return row["label"] is not None


def heavy_cats(table: pa.Table) -> pa.Array:
    """Filter on cats: weight >= 2 (null weight is dropped)."""
    return pc.greater_equal(table.column("weight"), 2)


def heavy_cats_row(row: Row) -> bool:
    """Plain-Python twin of heavy_cats."""
    return row["weight"] is not None and row["weight"] >= 2


def describe(table: pa.Table) -> pa.Table:
    """After a join: desc = "<label>@<name>" (null if either side is null), keeping every column."""
    desc = pc.binary_join_element_wise(table.column("label"), pa.scalar("@"), table.column("name"), "")
    return table.append_column("desc", desc)


def describe_row(row: Row) -> Row:
    """Plain-Python twin of describe."""
    label, name = row["label"], row["name"]
    return {**row, "desc": None if label is None or name is None else f"{label}@{name}"}


def shift_cat(table: pa.Table) -> pa.Table:
    """Rewrites the join column before a join: cat_id + 1 (the join then looks up the NEXT cat)."""
    return table.set_column(table.schema.get_field_index("cat_id"), "cat_id", pc.add(table.column("cat_id"), 1))


def shift_cat_row(row: Row) -> Row:
    """Plain-Python twin of shift_cat."""
    return {**row, "cat_id": None if row["cat_id"] is None else row["cat_id"] + 1}


VECTOR_DIM = 8
VECTOR_SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("vec", pa.list_(pa.float32()))])


def label_vectors(table: pa.Table) -> pa.Table:
    """items -> (id, vec): a deterministic pseudo-random vector per (id, label, score), null when the label is."""
    return pa.table(
        {"id": table.column("id"), "vec": [label_vector_row(r) for r in table.to_pylist()]}, schema=VECTOR_SCHEMA
    )


def label_vector_row(row: Row) -> list[float] | None:
    """Plain-Python twin of label_vectors for one row."""
    if row["label"] is None:
        return None
    seed = zlib.crc32(f"{row['id']}/{row['label']}/{row['score']}".encode())
    return np.random.default_rng(seed).standard_normal(VECTOR_DIM).astype(np.float32).tolist()

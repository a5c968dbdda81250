"""The adapter protocol every engine under test implements, with the shared fallbacks.

One `Peer` subclass per engine, one module each. The workloads call only the methods below, so every
engine does the same work on the same data. Where an engine has no native way to do something, the
subclass either raises `Unsupported` (the table then says so, with the reason) or inherits a fallback
from this module, and its `how` mapping says which path was taken: results never hide an emulation.

This module runs in the project venv and in the Space venv (pyarrow 15, numpy<2): it may import only
pyarrow, numpy and the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

KEY = "id"
BLOB = "image"  # the blob column of the W1 table; reads of "all rows" leave it out, as Labelhouse does


def index_columns(names: Sequence[str]) -> list[str]:
    """The columns a full read returns: everything but the blob."""
    return [n for n in names if n != BLOB]


class Unsupported(Exception):
    """The engine cannot do this; the message says why (it goes into the results table)."""


class RowReader:
    """Random access to one table: row i by index (our ids equal row indexes), alone or in a batch."""

    def __init__(self, one: Callable[[int], Any], many: Callable[[list[int]], Any], close: Callable[[], None]) -> None:
        self.one = one
        self.many = many
        self.close = close


# ----- filters: one spec, rendered as a pyarrow expression or as SQL -------------------------------------------


def where_expr(spec: dict[str, Any]) -> pc.Expression:
    """The filter as a pyarrow expression."""
    if spec["kind"] == "id_range":
        return (pc.field(KEY) >= spec["lo"]) & (pc.field(KEY) < spec["hi"])
    return (pc.field("label") == spec["label"]) & (pc.field("score") > spec["score"])


def where_sql(spec: dict[str, Any]) -> str:
    """The same filter as a SQL condition (DuckDB, Lance, Iceberg and Delta parse it)."""
    if spec["kind"] == "id_range":
        return f"{KEY} >= {spec['lo']} AND {KEY} < {spec['hi']}"
    return f"label = '{spec['label']}' AND score > {spec['score']}"


# ----- the view function of W6: the same UDF for every engine -------------------------------------------------

VIEW_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.int64(), nullable=False),
        pa.field("area", pa.float64()),
        pa.field("aspect", pa.float64()),
        pa.field("center_dist", pa.float64()),
        pa.field("label_tag", pa.string()),
    ]
)


def features(table: pa.Table) -> pa.Table:
    """Derived box features per label row: what a feature view over ground truth computes."""
    w, h = table.column("w"), table.column("h")
    cx = pc.add(table.column("x"), pc.divide(w, 2.0))
    cy = pc.add(table.column("y"), pc.divide(h, 2.0))
    return pa.Table.from_arrays(
        [
            table.column(KEY),
            pc.multiply(w, h),
            pc.divide(w, pc.add(h, 1e-9)),
            pc.sqrt(pc.add(pc.multiply(cx, cx), pc.multiply(cy, cy))),
            pc.binary_join_element_wise(pc.utf8_upper(table.column("label")), table.column("annotator"), ":"),
        ],
        schema=VIEW_SCHEMA,
    )


# ----- the protocol ---------------------------------------------------------------------------------------------


class Peer:
    """One engine. `root` is a directory the engine owns; each table is a name inside it.

    `how` names, per operation, the API used (and says "emulated: ..." where the engine has none), so the
    results show what was measured. Subclasses set `name`, `version_of` (the package whose version is
    reported) and override what their engine does natively.
    """

    name: ClassVar[str] = ""
    version_of: ClassVar[str] = ""
    how: ClassVar[dict[str, str]] = {}
    # Exceptions a writer retries on in W7 (commit conflicts); anything else counts as a failed write.
    conflict_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def path(self, table: str) -> str:
        """Where a table's files live (measured for bytes written, dropped from the page cache for W2)."""
        return os.path.join(self.root, table)

    def describe(self, op: str) -> str:
        """How this engine does `op` (native API, or the emulation), for the results table."""
        return self.how.get(op, "native")

    # W1, W3 -------------------------------------------------------------------------------------------------
    def create(self, table: str, data: pa.Table, blob_columns: Sequence[str]) -> None:
        """Create `table` holding `data` (blob columns as the engine stores blobs best)."""
        raise NotImplementedError

    # W2 -----------------------------------------------------------------------------------------------------
    def reader(self, table: str) -> RowReader:
        """Rows by index as Python values (dicts, or the blob alone where the engine only gives that)."""
        raise Unsupported("no random access API")

    # W3 -----------------------------------------------------------------------------------------------------
    def scan(self, table: str, spec: dict[str, Any]) -> pa.Table:
        """Rows matching the filter, through the engine's own reader."""
        raise NotImplementedError

    def scan_duckdb(self, table: str, spec: dict[str, Any]) -> pa.Table:
        """The same rows through DuckDB: `SELECT * FROM t WHERE ...` over what the engine hands DuckDB."""
        source = self.duckdb_source(table)  # first: an engine without one raises Unsupported
        import duckdb

        con = duckdb.connect()
        try:
            con.register("t", source)
            return con.sql(f"SELECT * FROM t WHERE {where_sql(spec)}").to_arrow_table()
        finally:
            con.close()

    def duckdb_source(self, table: str) -> Any:
        """An object DuckDB scans with filter pushdown (a pyarrow dataset), where the engine offers one."""
        raise Unsupported("no DuckDB integration")

    # W4, W5 -------------------------------------------------------------------------------------------------
    def upsert(self, table: str, rows: pa.Table) -> None:
        """Insert rows, or replace whole rows whose key exists, as one commit."""
        raise NotImplementedError

    def append(self, table: str, rows: pa.Table) -> None:
        """Add rows with new keys as one commit (W7)."""
        raise NotImplementedError

    def version(self, table: str) -> Any:
        """The current version's id (JSON-serialisable), to read it or diff from it later."""
        raise Unsupported("no versions")

    def read_version(self, table: str, version: Any) -> pa.Table:
        """All rows (blob columns excluded) of an earlier version."""
        raise Unsupported("no versions")

    def read_all(self, table: str) -> pa.Table:
        """All rows of the current version (blob columns excluded)."""
        return self.read_version(table, self.version(table))

    def diff(self, table: str, start: Any, end: Any) -> pa.Table:
        """Row-level changes from `start` to `end`, with a change-type column where the engine has one.

        Fallback: read both versions in full and compare by key (cost proportional to the table).
        """
        return full_diff(self.read_version(table, start), self.read_version(table, end))

    def history(self, table: str, key: int, versions: Sequence[Any]) -> pa.Table:
        """Every state of one row across `versions`. Fallback: look the key up in every version."""
        parts = []
        for v in versions:
            got = self.lookup(table, key, v)
            if got.num_rows:
                parts.append(got.append_column("_version", pa.array([json.dumps(v)] * got.num_rows)))
        return pa.concat_tables(parts) if parts else pa.table({})

    def lookup(self, table: str, key: int, version: Any) -> pa.Table:
        """The row with `key` in `version` (fallback: a filtered read of the full version)."""
        data = self.read_version(table, version)
        return data.filter(pc.field(KEY) == key)

    # W6 -----------------------------------------------------------------------------------------------------
    # Default: the engine's change feed (`changes`) drives the UDF into a second table of the same engine. The
    # source version last applied is kept in a small state file beside the tables.
    def apply_change(self, table: str, updates: pa.Table, inserts: pa.Table) -> None:
        """Apply W6's change to the source: one upsert of both halves."""
        self.upsert(table, pa.concat_tables([updates, inserts]))

    def view_prepare(self) -> None:
        """Untimed set-up a view engine needs once per process (Space starts Ray here)."""

    def view_create(self, source: str, view: str) -> None:
        """Create the view table and fill it from the source (a full computation)."""
        rows = self.read_all(source)
        self.create(view, features(rows), [])
        self._save_view_state(view, self.version(source))

    def view_refresh(self, source: str, view: str) -> dict[str, Any]:
        """Bring the view up to the source's head by applying only what changed; returns counts."""
        since = self._load_view_state(view)
        head = self.version(source)
        changed = self.changes(source, since, head)
        if changed.num_rows:
            self.upsert(view, features(changed))
        self._save_view_state(view, head)
        return {"rows_recomputed": changed.num_rows}

    def view_recompute(self, source: str, view: str) -> dict[str, Any]:
        """Recompute the whole view from the source head and replace the view's contents."""
        rows = self.read_all(source)
        self.overwrite(view, features(rows))
        self._save_view_state(view, self.version(source))
        return {"rows_recomputed": rows.num_rows}

    def view_read(self, view: str) -> pa.Table:
        """The view's rows (to check the incremental result equals the full one)."""
        return self.read_all(view)

    def changes(self, table: str, start: Any, end: Any) -> pa.Table:
        """Rows inserted or updated after `start` up to `end` (post-images). Fallback: a full diff."""
        d = full_diff(self.read_version(table, start), self.read_version(table, end))
        return d.filter(pc.field("_change_type") != "delete").drop_columns(["_change_type"])

    def overwrite(self, table: str, rows: pa.Table) -> None:
        """Replace all rows of `table` in one commit."""
        raise NotImplementedError

    def _state_file(self, view: str) -> str:
        return os.path.join(self.root, f"{view}.view-state.json")

    def _save_view_state(self, view: str, version: Any) -> None:
        with open(self._state_file(view), "w") as f:
            json.dump({"source_version": version}, f)

    def _load_view_state(self, view: str) -> Any:
        with open(self._state_file(view)) as f:
            return json.load(f)["source_version"]

    # lifecycle ----------------------------------------------------------------------------------------------
    def drop(self, table: str) -> None:
        """Delete a table's files (an earlier ingest repetition, to free the disk)."""
        shutil.rmtree(self.path(table), ignore_errors=True)

    def close(self) -> None:
        """Release open handles (memory maps, sessions) so the next measurement starts clean."""


def full_diff(old: pa.Table, new: pa.Table) -> pa.Table:
    """Changed rows between two full versions: new or changed rows of `new` plus keys gone from `old`.

    Rows carry `_change_type` (insert, update_postimage, delete: key only); this is the fallback for engines
    with no row-level change feed, and it costs two full reads and a hash join.
    """
    import numpy as np
    import pyarrow.dataset as pads

    cols = [c for c in new.column_names if c != KEY]
    left = new.append_column("_in_new", pa.array(np.ones(new.num_rows, dtype=bool)))
    right = old.select([KEY, *cols]).append_column("_in_old", pa.array(np.ones(old.num_rows, dtype=bool)))
    joined = left.join(right, keys=KEY, join_type="full outer", left_suffix="", right_suffix="_old")
    changed: pc.Expression = pc.scalar(False)
    for c in cols:
        a, b = pc.field(c), pc.field(f"{c}_old")
        # Kleene logic: a null comparison (a null side) is decided by the is_null test, and a filter drops null.
        changed = changed | (a != b) | (a.is_null() != b.is_null())
    kind = pc.if_else(
        pc.field("_in_new").is_null(),
        pc.scalar("delete"),
        pc.if_else(pc.field("_in_old").is_null(), pc.scalar("insert"), pc.scalar("update_postimage")),
    )
    keep = (kind != "update_postimage") | changed
    projection = {KEY: pc.field(KEY), **{c: pc.field(c) for c in cols}, "_change_type": kind}
    return pads.dataset(joined).to_table(columns=projection, filter=keep)


def mask(table: pa.Table, expr: pc.Expression) -> pa.Array:
    """A boolean expression evaluated on a table, one value per row (null counts as false)."""
    import pyarrow.dataset as pads

    values = pads.dataset(table).to_table(columns={"m": expr}).column("m")
    return pc.fill_null(values, False)


def retry(fn: Callable[[], None], errors: tuple[type[BaseException], ...], attempts: int = 50) -> int:
    """Run a write, retrying on commit conflicts with a short backoff; returns the retries it took."""
    for attempt in range(attempts):
        try:
            fn()
            return attempt
        except errors:
            time.sleep(0.01 * (1 + attempt % 5))
    raise RuntimeError(f"gave up after {attempts} conflicting attempts")

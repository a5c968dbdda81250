"""What each workload's table shows: columns as (case, figure) pairs, how to format them, which get ratios.

The report and the charts both read these specs, so a figure shown in the table is the one plotted.
Ratios are engine / Labelhouse for the same cell: above 1.00x the engine took longer (or wrote more)
than Labelhouse, below 1.00x Labelhouse lost that cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .inputs import Sizes


@dataclass(frozen=True)
class Col:
    """One column: the median of figure `key` over the samples of `case`."""

    label: str
    case: str
    key: str
    unit: str = "s"  # s, ms, us, mb, int, bool, text
    ratio: bool = False  # add "vs LH" and plot it
    target: str = ""  # "ahead" (must beat every peer) or "2x" (within 2x of the best peer)


@dataclass(frozen=True)
class Spec:
    """A workload's section of the report."""

    id: str
    title: str
    what: str
    cols: list[Col] = field(default_factory=list)
    how_case: str = ""
    how_key: str = "how"


def params(sizes: Sizes) -> dict[str, Any]:
    """What titles and labels may name: the run's sizes, and W5's middle version."""
    return {**asdict(sizes), "mid": sizes.commits // 2}


SPECS: list[Spec] = [
    Spec(
        "W1",
        "Ingest: {blob_rows:,} rows x {blob_kb} KB blobs + 10 label columns",
        "One commit of the whole table from an in-memory Arrow table; blobs stored the way each engine stores "
        "binary columns (Labelhouse and Space: ArrayRecord record files). Peak = RSS above the starting point.",
        [
            Col("seconds", "blobs", "seconds", "s", ratio=True, target="2x"),
            Col("peak MB", "blobs", "peak_mb", "mb", ratio=True),
            Col("on disk MB", "blobs", "bytes_added", "bytes"),
            Col("files", "blobs", "files_added", "int"),
        ],
    ),
    Spec(
        "W2",
        "Random access: {reads:,} shuffled indices of the blob table, single rows and batches of 256",
        "Rows (label columns + the 50 KB blob) by index, as Python values. Warm: after an untimed pass. Cold: "
        "the table's files evicted with posix_fadvise(DONTNEED) and the reader reopened (`cold open` is what "
        "opening cost, as some engines read ahead there; `from open` is the cold open plus every timed read, per "
        "row: what a cold start costs in all, and what the cold targets are judged on). Engines without a "
        "row-index API look the key up (keys equal indices). Each timed loop stops after its time budget; "
        "`rows timed` says how many reads the median is over.",
        [
            Col("warm single us/row", "warm", "single_us_per_row", "us", ratio=True, target="2x"),
            Col("warm batch us/row", "warm", "batch_us_per_row", "us", ratio=True, target="2x"),
            Col("cold single us/row", "cold_single", "single_us_per_row", "us", ratio=True),
            Col("cold batch us/row", "cold_batch", "batch_us_per_row", "us", ratio=True),
            Col(
                "cold single from open us/row",
                "cold_single",
                "single_from_open_us_per_row",
                "us",
                ratio=True,
                target="2x",
            ),
            Col(
                "cold batch from open us/row", "cold_batch", "batch_from_open_us_per_row", "us", ratio=True, target="2x"
            ),
            Col("cold open s", "cold_single", "open_s", "s"),
            Col("cold open MB read", "cold_single", "open_read_mb", "mb"),
            Col("cold single MB read", "cold_single", "single_read_mb", "mb"),
            Col("single rows timed", "warm", "single_rows_timed", "int"),
        ],
        how_case="warm",
    ),
    Spec(
        "W3",
        "Filtered scan: {label_rows:,}-row label table, 1% selective",
        "`id_range`: 1% of keys, a range statistics can prune. `label_score`: label = 'cat' AND score > 0.95, "
        "also ~1% of rows but spread everywhere, so nothing prunes. Native = the engine's own reader; DuckDB = "
        "`SELECT * ... WHERE` over what the engine hands DuckDB.",
        [
            Col("id_range native ms", "id_range:native", "seconds", "ms", ratio=True, target="2x"),
            Col("id_range DuckDB ms", "id_range:duckdb", "seconds", "ms", ratio=True, target="2x"),
            Col("label_score native ms", "label_score:native", "seconds", "ms", ratio=True, target="2x"),
            Col("label_score DuckDB ms", "label_score:duckdb", "seconds", "ms", ratio=True, target="2x"),
            Col("id_range rows", "id_range:native", "rows", "int"),
            Col("label_score rows", "label_score:native", "rows", "int"),
            Col("ingest of the table s", "ingest", "seconds", "s", ratio=True),
        ],
        how_case="id_range:native",
    ),
    Spec(
        "W4",
        "Upsert 1% by key (half updates, half inserts)",
        "One commit per repetition, each with fresh keys, on the label table (W3's) and on the blob table "
        "(W1's). Bytes written = growth of the table's directory; files = files added.",
        [
            Col("labels s", "labels", "seconds", "s", ratio=True, target="ahead"),
            Col("labels MB written", "labels", "bytes_added", "bytes", ratio=True),
            Col("labels files", "labels", "files_added", "int"),
            Col("blobs s", "blobs", "seconds", "s", ratio=True, target="ahead"),
            Col("blobs MB written", "blobs", "bytes_added", "bytes", ratio=True),
            Col("blobs files", "blobs", "files_added", "int"),
            Col("labels peak MB", "labels", "peak_mb", "mb"),
        ],
        how_case="labels",
    ),
    Spec(
        "W5",
        "Versions: {commits} commits of 0.1% each on the label table",
        "Each commit upserts 0.1% of rows (half updates, half inserts) and updates one hot key. Then: read "
        "version 0 and version {mid} in full, the row-level diff {mid} -> {commits}, and the hot key's history. "
        "Reads are medians of 3; `first read v0` is the first of them, before any cache of the engine's is warm "
        "(Labelhouse's Arrow cache fills then).",
        [
            Col("commit s", "versions", "commit_s", "s", ratio=True, target="ahead"),
            Col("read v0 s", "versions", "read_v0_s", "s", ratio=True, target="ahead"),
            Col("read v{mid} s", "versions", "read_v10_s", "s", ratio=True, target="ahead"),
            Col("first read v0 s", "versions", "read_v0_first_s", "s", ratio=True),
            Col("diff {mid}->{commits} s", "versions", "diff_s", "s", ratio=True, target="ahead"),
            Col("diff rows", "versions", "diff_rows", "int"),
            Col("history s", "versions", "history_s", "s", ratio=True, target="ahead"),
            Col("history rows", "versions", "history_rows", "int"),
        ],
        how_case="versions",
        how_key="diff_how",
    ),
    Spec(
        "W6",
        "Incremental view refresh after a 1% change vs full recompute",
        "A feature view (area, aspect, distance, tag) over the label table. After each 1% change (half "
        "updates, half inserts) the view is refreshed incrementally, checked against the UDF applied to the "
        "whole source, then recomputed in full. Engines without views: their change feed drives the same UDF "
        "into a second table.",
        [
            Col("incremental s", "view", "incremental_s", "s", ratio=True, target="ahead"),
            Col("full s", "view", "full_s", "s", ratio=True),
            Col("rows recomputed", "view", "rows_recomputed", "int"),
            Col("correct", "view", "correct", "bool"),
            Col("incremental peak MB", "view", "incremental_peak_mb", "mb"),
        ],
        how_case="view",
    ),
    Spec(
        "W7",
        "Concurrency: {w7_writers} processes upserting the same new keys and appending their own",
        "Each process runs {w7_rounds} rounds of (upsert the same {w7_shared_keys} new keys, append "
        "{w7_append_rows} rows of its own), retrying what its engine reports as a commit conflict. Then: "
        "duplicates = rows - distinct keys; lost = acknowledged appends missing.",
        [
            Col("duplicates", "concurrency", "duplicates", "int", target="zero"),
            Col("lost appends", "concurrency", "lost_appends", "int", target="zero"),
            Col("rows", "concurrency", "rows", "int"),
            Col("expected", "concurrency", "expected_rows", "int"),
            Col("retries", "concurrency", "retries", "int"),
            Col("failed writes", "concurrency", "failures", "int"),
            Col("errors", "concurrency", "errors", "text"),
        ],
        how_case="concurrency",
    ),
]

"""The work on one shard, run in parallel (a thread, or a Ray task): read, parse, check, write data files.

A worker commits nothing. It checks its samples (the items checks), writes the data files of those that
pass and of their components with `Dataset.write_files`, and returns the files' descriptions with its
check report and the reject rows of its failing samples, so one driver commits every shard in one
snapshot. Keys another shard also uses come in as `duplicates` (found by the driver after a first pass)
and fail the key check, as they would if all shards were checked as one batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from checks import CheckReport, build_report, check_batch
from storage import Catalog
from storage.groundtruth import dataset_names

from ..quarantine import REJECTS_SCHEMA, rejected_rows
from ..rejects import SourceReject
from ..s3_bucket.client import S3Options
from .components import components_name
from .location import read_shard
from .shard import SOURCE, parse_shard

KEY_CHECK = "unique_primary_key"  # the items check a key shared by two shards fails, as in one batch


@dataclass(frozen=True)
class ShardFiles:
    """What a worker did with one shard; small and picklable (descriptions of files, no sample bytes)."""

    shard: str  # path or URL
    sha256: str
    bytes_read: int
    keys: list[str]  # the item id of every sample, passing or not
    items: list[dict[str, Any]]  # `write_files` descriptions of the passing samples' item rows
    components: list[dict[str, Any]]  # ... and of their components
    report: CheckReport  # the items checks on every sample of the shard
    rejected: pa.Table  # rows of the items' rejects dataset for the failing samples
    source_rejects: list[SourceReject]  # members that are no sample (unsafe, misplaced, unreadable)
    metadata: dict[str, bytes]  # shard-level members such as __meta__

    @property
    def name(self) -> str:
        return self.shard.rsplit("/", 1)[-1]


def write_shard(
    catalog: Catalog,
    project: str,
    shard: str,
    *,
    s3: S3Options | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    duplicates: Mapping[str, str] | None = None,
) -> ShardFiles:
    """Parse, check and write one shard's rows into the project's items and components datasets (which
    must exist), uncommitted. `duplicates` maps item ids that fail the key check to the reason."""
    parsed = parse_shard(shard, content=read_shard(shard, s3), source=source, flow_run_id=flow_run_id)
    items = parsed.items
    report = check_batch("items", items) if items.num_rows else CheckReport(0, (), ())
    if duplicates:
        report = _fail_keys(report, items, duplicates)
    failing = {row.row for row in report.failing_rows}
    good = items.filter(pa.array([i not in failing for i in range(items.num_rows)], pa.bool_()))
    components = parsed.components.filter(pc.is_in(parsed.components["item_id"], value_set=good["id"]))
    return ShardFiles(
        shard=parsed.shard,
        sha256=parsed.sha256,
        bytes_read=parsed.bytes_read,
        keys=items["id"].to_pylist(),
        items=catalog.dataset(dataset_names(project)["items"]).write_files(good) if good.num_rows else [],
        components=catalog.dataset(components_name(project)).write_files(components) if components.num_rows else [],
        report=report,
        rejected=rejected_rows(items, report) if failing else REJECTS_SCHEMA.empty_table(),
        source_rejects=parsed.rejects,
        metadata=parsed.metadata,
    )


def write_shard_elsewhere(spec: dict[str, Any], project: str, shard: str, **options: Any) -> ShardFiles:
    """write_shard in another process (a Ray task), which opens the catalog from its `Catalog.spec()`."""
    return write_shard(Catalog.from_spec(spec), project, shard, **options)


def _fail_keys(report: CheckReport, items: pa.Table, reasons: Mapping[str, str]) -> CheckReport:
    """`report` with the rows whose id is in `reasons` also failing the key check."""
    failing = {row: reasons[key] for row, key in enumerate(items["id"].to_pylist()) if key in reasons}
    outcomes = []
    for result in report.results:
        rows = {f.row: reason for f in report.failing_rows for check, reason in f.reasons if check == result.name}
        outcomes.append((result.name, {**rows, **failing} if result.name == KEY_CHECK else rows))
    return build_report(items, ["id"], outcomes)

"""Commit a checked batch: good rows to the dataset, failing rows to `<dataset>__rejects`.

One bad row never blocks the batch, unless too many fail: above `max_failure_rate` the whole batch is
refused with BatchRejectedError and nothing is written. The rejects dataset holds the latest verdict
per row: when a row of a later batch passes, or fails other checks, its earlier rejects are removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from checks import CheckReport, row_keys
from storage import Catalog, InvalidInputError, Snapshot

from .errors import BatchRejectedError

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # row key, check and a digest of the row
        pa.field("row_key", pa.string(), nullable=False),  # the key as text (JSON array for compound keys)
        pa.field("check", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("row", pa.string(), nullable=False),  # the rejected row, every column, as JSON
        pa.field("source_ref", pa.string()),
        pa.field("source_pointer", pa.string()),
        pa.field("flow_run_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class QuarantineOutcome:
    committed: Snapshot | None  # the dataset's new snapshot; None when no row passed
    rejected: Snapshot | None  # the rejects dataset's last new snapshot; None when it did not change
    good_rows: int
    rejected_rows: int


def rejects_name(dataset: str) -> str:
    return f"{dataset}__rejects"


def commit_with_quarantine(
    catalog: Catalog,
    dataset: str,
    batch: pa.Table,
    report: CheckReport,
    *,
    max_failure_rate: float = 0.1,
    idempotency_key: str | None = None,
    message: str | None = None,
    properties: dict[str, str] | None = None,
) -> QuarantineOutcome:
    """Upsert the rows of `batch` that passed `report` into `dataset`, and its failing rows into the
    rejects dataset; raise BatchRejectedError, writing nothing, if more than `max_failure_rate` of the
    rows failed. Retrying with the same `idempotency_key` never writes twice."""
    if report.row_count != batch.num_rows:
        raise InvalidInputError(
            f"the check report covers {report.row_count} rows but the batch has {batch.num_rows}; "
            "check the batch you commit"
        )
    if report.failure_rate > max_failure_rate:
        raise BatchRejectedError(_rejection_message(dataset, report, max_failure_rate))
    target = catalog.dataset(dataset)
    failing = {row.row for row in report.failing_rows}
    good = batch.filter(pa.array([i not in failing for i in range(batch.num_rows)], pa.bool_()))
    committed = (
        target.upsert(good, idempotency_key=idempotency_key, message=message, properties=properties)
        if good.num_rows
        else None
    )
    keys = row_keys(batch, target.primary_keys)
    rejected = _record_rejects(catalog, dataset, rejected_rows(batch, report), keys, idempotency_key)
    return QuarantineOutcome(
        committed=committed, rejected=rejected, good_rows=good.num_rows, rejected_rows=len(failing)
    )


def commit_files_with_quarantine(
    catalog: Catalog,
    dataset: str,
    files: Sequence[dict[str, Any]],
    report: CheckReport,
    rejected: pa.Table,
    keys: Sequence[Any],
    *,
    max_failure_rate: float = 0.1,
    idempotency_key: str | None = None,
    message: str | None = None,
    properties: dict[str, str] | None = None,
) -> QuarantineOutcome:
    """commit_with_quarantine for a batch that parallel workers checked and wrote themselves: `files`
    (from `Dataset.write_files`) hold its passing rows, `rejected` the `rejected_rows` of its failing
    ones, `keys` every row's primary key; `report` covers the whole batch. One snapshot of `dataset`."""
    if report.failure_rate > max_failure_rate:
        raise BatchRejectedError(_rejection_message(dataset, report, max_failure_rate))
    committed = (
        catalog.dataset(dataset).commit_files(
            files, "upsert", idempotency_key=idempotency_key, message=message, properties=properties
        )
        if files
        else None
    )
    failing = len(report.failing_rows)
    return QuarantineOutcome(
        committed=committed,
        rejected=_record_rejects(catalog, dataset, rejected, keys, idempotency_key),
        good_rows=report.row_count - failing,
        rejected_rows=failing,
    )


def rejected_rows(batch: pa.Table, report: CheckReport) -> pa.Table:
    """The rows of the rejects dataset for `batch`'s failing rows: one per row and failed check."""
    failed_rows = batch.take(pa.array([failed.row for failed in report.failing_rows], pa.int64())).to_pylist()
    return pa.Table.from_pylist(
        [
            _reject(row, _key_text(failed.key), check, reason)
            for failed, row in zip(report.failing_rows, failed_rows, strict=True)
            for check, reason in failed.reasons
        ],
        schema=REJECTS_SCHEMA,
    )


def _record_rejects(
    catalog: Catalog, dataset: str, new: pa.Table, keys: Sequence[Any], idempotency_key: str | None
) -> Snapshot | None:
    """Upsert a batch's new rejects and drop the earlier rejects of its rows (`keys`) that no longer apply."""
    rejects = catalog.create_dataset(rejects_name(dataset), REJECTS_SCHEMA, primary_keys=["id"], exist_ok=True)
    snapshot = None
    if new.num_rows:
        key = f"{idempotency_key}:rejects" if idempotency_key else None
        snapshot = rejects.upsert(new, idempotency_key=key, message=f"rejected rows of {dataset}")
    batch_keys = [_key_text(k) for k in keys]
    earlier = rejects.read_all(filter=pc.field("row_key").isin(pa.array(batch_keys, pa.string())), columns=["id"])
    stale = sorted(set(earlier["id"].to_pylist()) - set(new["id"].to_pylist()))
    if stale:
        snapshot = rejects.delete(keys=stale, message=f"rows of {dataset} that no longer fail these checks")
    return snapshot


def _reject(row: dict[str, Any], key: str, check: str, reason: str) -> dict[str, Any]:
    row_json = json.dumps(row, ensure_ascii=False, sort_keys=True, default=_json_default)
    digest = hashlib.sha256(row_json.encode("utf-8")).hexdigest()[:12]
    return {
        "id": f"{key}#{check}#{digest}",
        "row_key": key,
        "check": check,
        "reason": reason,
        "row": row_json,
        "source_ref": row.get("source_ref"),
        "source_pointer": row.get("source_pointer"),
        "flow_run_id": row.get("flow_run_id"),
    }


def _key_text(key: Any) -> str:
    return json.dumps(list(key), default=_json_default) if isinstance(key, tuple) else str(key)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _rejection_message(dataset: str, report: CheckReport, max_failure_rate: float) -> str:
    counts = Counter(check for row in report.failing_rows for check in row.checks)
    worst, count = counts.most_common(1)[0]
    example = next(reason for row in report.failing_rows for check, reason in row.reasons if check == worst)
    return (
        f"dataset {dataset!r}: {len(report.failing_rows)} of {report.row_count} rows "
        f"({report.failure_rate:.1%}) failed checks, above the allowed {max_failure_rate:.1%}; nothing was "
        f"written. Most failures: {worst} ({count} rows), e.g. {example}. Fix the source data, or raise "
        "max_failure_rate to quarantine them instead."
    )

"""Commit a source's change set to a project's canonical datasets, through the checks and quarantine.

Every source (Label Studio, Labelbox, COCO, WebDataset, S3) ends here: items first (annotations and
predictions refer to them), each table checked and committed with `commit_with_quarantine`, then the
rows the change set makes stale are deleted. Input a parser could not turn into rows at all (a
malformed NDJSON line, an unusable archive member) is recorded in the items' rejects dataset too, so
one place lists everything that did not make it in, with the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from checks import ClassMap, check_batch
from storage import Catalog, Dataset
from storage.groundtruth import dataset_names, ensure_groundtruth

from .changes import TABLES, ChangeSet, Table, stale_keys
from .quarantine import REJECTS_SCHEMA, QuarantineOutcome, commit_with_quarantine, rejects_name
from .rejects import SourceReject

SOURCE_FORMAT_CHECK = "source_format"
_MAX_REJECT_TEXT = 100_000


@dataclass(frozen=True)
class CommitOutcome:
    """Per table: what was committed and quarantined; how many stale rows were deleted."""

    tables: Mapping[Table, QuarantineOutcome]
    deleted: Mapping[Table, int]
    source_rejects: int

    @property
    def committed_rows(self) -> int:
        return sum(outcome.good_rows for outcome in self.tables.values())

    @property
    def rejected_rows(self) -> int:
        return sum(outcome.rejected_rows for outcome in self.tables.values()) + self.source_rejects


def commit_changes(
    catalog: Catalog,
    project: str,
    change: ChangeSet,
    *,
    idempotency_key: str,
    class_map: ClassMap | None = None,
    relation_labels: Collection[str] | None = None,
    max_failure_rate: float = 0.1,
    message: str | None = None,
    properties: dict[str, str] | None = None,
    source_rejects: Sequence[SourceReject] = (),
) -> CommitOutcome:
    """Check and commit `change` into the project's canonical datasets (created when missing).

    `properties` (e.g. a watermark) go on the items commit, which is the one a rerun looks at.
    Retrying with the same `idempotency_key` writes nothing twice. Raises BatchRejectedError if more
    than `max_failure_rate` of a table's rows fail; tables committed before it stay committed.
    """
    groundtruth = ensure_groundtruth(catalog, project)
    names = dataset_names(project)
    outcomes: dict[Table, QuarantineOutcome] = {}
    item_ids = set(change.items["id"].to_pylist())
    for table in TABLES:
        rows: pa.Table = getattr(change, table)
        if not rows.num_rows:  # nothing to check or commit (and no snapshot for an empty batch)
            outcomes[table] = QuarantineOutcome(committed=None, rejected=None, good_rows=0, rejected_rows=0)
            continue
        known = None if table == "items" else _known_items(groundtruth.items, rows, item_ids)
        report = check_batch(table, rows, item_ids=known, class_map=class_map, relation_labels=relation_labels)
        if table == "items":  # rows of a quarantined item must not pass as referring to an existing one
            item_ids -= {failed.key for failed in report.failing_rows}
        outcomes[table] = commit_with_quarantine(
            catalog,
            names[table],
            rows,
            report,
            max_failure_rate=max_failure_rate,
            idempotency_key=f"{idempotency_key}:{table}",
            message=message,
            properties=properties if table == "items" else None,
        )
    deleted = {table: _delete_stale(getattr(groundtruth, table), change, table, idempotency_key) for table in TABLES}
    quarantined = record_source_rejects(catalog, names["items"], source_rejects, idempotency_key)
    return CommitOutcome(tables=outcomes, deleted=deleted, source_rejects=quarantined)


def record_source_rejects(
    catalog: Catalog, dataset: str, rejects: Sequence[SourceReject], idempotency_key: str | None = None
) -> int:
    """Write unparseable input into `<dataset>__rejects` under the check `source_format`; returns the count."""
    if not rejects:
        return 0
    rows = []
    for reject in rejects:
        key = f"{reject.source_ref}#{reject.source_pointer}"
        text = reject.text[:_MAX_REJECT_TEXT]
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        rows.append(
            {
                "id": f"{key}#{SOURCE_FORMAT_CHECK}#{digest}",
                "row_key": key,
                "check": SOURCE_FORMAT_CHECK,
                "reason": reject.reason,
                "row": json.dumps({"text": text}, ensure_ascii=False),
                "source_ref": reject.source_ref,
                "source_pointer": reject.source_pointer,
                "flow_run_id": None,
            }
        )
    target = catalog.create_dataset(rejects_name(dataset), REJECTS_SCHEMA, primary_keys=["id"], exist_ok=True)
    unique = {row["id"]: row for row in rows}  # the same bad line twice in one batch is one reject
    target.upsert(
        pa.Table.from_pylist(list(unique.values()), schema=REJECTS_SCHEMA),
        idempotency_key=f"{idempotency_key}:source-rejects" if idempotency_key else None,
    )
    return len(rejects)


def _known_items(items: Dataset, rows: pa.Table, batch_items: set[str]) -> set[str]:
    """The items `rows` refer to that exist: in this batch, or already in the items dataset."""
    referenced = set(rows["item_id"].to_pylist()) - batch_items
    if not referenced:
        return batch_items
    existing = items.take(sorted(referenced), columns=["id"])["id"].to_pylist()
    return batch_items | set(existing)


def _delete_stale(dataset: Dataset, change: ChangeSet, table: Table, idempotency_key: str) -> int:
    existing = _in_scope(dataset, change, table)
    if existing is None:
        return 0
    stale = stale_keys(change, table, existing)
    if stale:
        dataset.delete(keys=stale, idempotency_key=f"{idempotency_key}:{table}:stale", message="stale at the source")
    return len(stale)


def _in_scope(dataset: Dataset, change: ChangeSet, table: Table) -> pa.Table | None:
    """The existing rows a change set's scopes can make stale (read with a filter: cost ~ the scope)."""
    columns = ["id"] if table == "items" else ["id", "item_id", "submission_id"]
    if change.whole_project:
        return dataset.read_all(columns=columns)
    if table == "items":
        if not change.deleted_items:
            return None
        return dataset.read_all(filter=pc.field("id").isin(_strings(change.deleted_items)), columns=columns)
    items = change.replaced_items + change.deleted_items
    if not items and not change.replaced_submissions:
        return None
    scope = pc.field("item_id").isin(_strings(items)) | pc.field("submission_id").isin(
        _strings(change.replaced_submissions)
    )
    return dataset.read_all(filter=scope, columns=columns)


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(values, pa.string())  # typed, so an empty scope still compares with string columns

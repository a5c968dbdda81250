"""Quarantine: good rows commit, failing rows go to `<dataset>__rejects`, too many failures refuse all."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from checks import check_batch
from storage import Catalog, DatasetNotFoundError
from storage.groundtruth import ensure_groundtruth
from tasks.errors import BatchRejectedError
from tasks.label_studio import parse_export, parse_labeling_config
from tasks.quarantine import commit_with_quarantine, rejects_name

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label-studio"
CONFIG = parse_labeling_config((FIXTURES / "label_studio_config.xml").read_text())
DATASET = "demo__annotations"


def _export(mutate=lambda tasks: None):
    tasks = json.loads((FIXTURES / "export_json.json").read_text())
    mutate(tasks)
    return parse_export(json.dumps(tasks), name="export_json.json", flow_run_id="run-7")


def _relabel(label: str):
    def mutate(tasks):
        tasks[0]["annotations"][1]["result"][0]["value"]["rectanglelabels"] = [label]  # annotation 2's box

    return mutate


def _check(parsed):
    return check_batch(
        "annotations",
        parsed.changes.annotations,
        item_ids=parsed.changes.items["id"].to_pylist(),
        class_map=CONFIG.class_map,
        relation_labels=CONFIG.relation_labels,
    )


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    catalog = Catalog(tmp_path / "lakehouse")
    ensure_groundtruth(catalog, "demo")
    return catalog


def test_bad_rows_are_quarantined_and_good_rows_commit(catalog):
    parsed = _export(_relabel("truck"))
    report = _check(parsed)
    outcome = commit_with_quarantine(
        catalog, DATASET, parsed.changes.annotations, report, idempotency_key=parsed.idempotency_key
    )
    assert (outcome.good_rows, outcome.rejected_rows) == (9, 1)
    committed = catalog.dataset(DATASET).read_all(columns=["id"])["id"].to_pylist()
    assert "label-studio:1/annotation:2/bb2" not in committed and len(committed) == 9
    rejects = catalog.dataset(rejects_name(DATASET)).read_all().to_pylist()
    assert len(rejects) == 1
    reject = rejects[0]
    assert (reject["row_key"], reject["check"], reject["flow_run_id"]) == (
        "label-studio:1/annotation:2/bb2",
        "label_in_class_map",
        "run-7",
    )
    assert "'truck'" in reject["reason"]
    assert reject["source_pointer"] == "/0/annotations/1/result/0"
    assert reject["source_ref"].startswith("export_json.json@sha256:")
    row = json.loads(reject["row"])
    assert row["labels"] == ["truck"] and json.loads(row["raw"])[0]["value"]["rectanglelabels"] == ["truck"]

    # A retry of the same batch writes nothing new.
    snapshots = {name: catalog.dataset(name).versions().num_rows for name in (DATASET, rejects_name(DATASET))}
    commit_with_quarantine(catalog, DATASET, parsed.changes.annotations, report, idempotency_key=parsed.idempotency_key)
    assert {name: catalog.dataset(name).versions().num_rows for name in snapshots} == snapshots

    # Once fixed at the source, the row commits and its reject goes away.
    fixed = _export(_relabel("cyclist"))
    outcome = commit_with_quarantine(catalog, DATASET, fixed.changes.annotations, _check(fixed))
    assert outcome.rejected_rows == 0
    assert catalog.dataset(rejects_name(DATASET)).count() == 0
    assert catalog.dataset(DATASET).count() == 10


def test_too_many_failures_refuse_the_whole_batch(catalog):
    def break_everything(tasks):
        for task in tasks:
            for submission in task["annotations"] + task["drafts"]:
                submission["lead_time"] = -1

    parsed = _export(break_everything)
    report = _check(parsed)
    assert report.failure_rate > 0.5
    with pytest.raises(BatchRejectedError, match=r"failed checks, above the allowed 50\.0%; nothing was written"):
        commit_with_quarantine(catalog, DATASET, parsed.changes.annotations, report, max_failure_rate=0.5)
    assert catalog.dataset(DATASET).versions().num_rows == 1  # only the creation snapshot
    with pytest.raises(DatasetNotFoundError):
        catalog.dataset(rejects_name(DATASET))
    outcome = commit_with_quarantine(catalog, DATASET, parsed.changes.annotations, report, max_failure_rate=1.0)
    assert outcome.committed is None and outcome.rejected_rows == parsed.changes.annotations.num_rows


def test_a_report_must_belong_to_the_batch(catalog):
    parsed = _export()
    with pytest.raises(ValueError, match="covers 10 rows but the batch has 1"):
        commit_with_quarantine(catalog, DATASET, parsed.changes.annotations.slice(0, 1), _check(parsed))
    assert isinstance(parsed.changes.annotations, pa.Table)

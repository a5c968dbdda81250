"""The orchestrated half of `labelhouse demo`: the bundled Label Studio sample through the whole path.

Ingest with a bad label injected (the row is quarantined, the rest commits), derive a materialized view,
ingest the corrected export (the row commits, its reject goes away), refresh the view up to the new
snapshot, ingest the same export again (nothing changes), and query with SQL. Flows run in this process
on Prefect's ephemeral API unless PREFECT_API_URL names a server. The `demo` project's datasets are
dropped first, so every run gives the same result.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from storage import Catalog

from .ingest import IngestResult
from .label_studio import ingest_label_studio_export
from .refresh import refresh_dataset
from .samples import LABEL_STUDIO_CONFIG, LABEL_STUDIO_EXPORT, sample_path

PROJECT = "demo"
ANNOTATIONS = f"{PROJECT}__annotations"
VIEW = f"{PROJECT}__box_areas"
BAD_LABEL = "truck"  # not in the labeling config's class map
FIXED_LABEL = "cyclist"

Step = tuple[str, Callable[[], str]]


def box_areas(annotations: pa.Table) -> pa.Table:
    """Each annotation's first label and its box area in pixels (null for regions without a box)."""
    box = annotations["box"]
    area = pc.multiply(pc.struct_field(box, "w"), pc.struct_field(box, "h"))
    first_label = pa.array([labels[0] if labels else None for labels in annotations["labels"].to_pylist()], pa.string())
    return pa.table({"id": annotations["id"], "label": first_label, "area_px": area})


class PipelineDemo:
    """The steps of the orchestrated demo on one catalog; run `steps()` in order."""

    def __init__(self, catalog: Catalog, workdir: Path | None = None) -> None:
        self.catalog = catalog
        self.facts: dict[str, Any] = {}
        self.runs: list[IngestResult] = []
        self._workdir = workdir or Path(tempfile.mkdtemp(prefix="labelhouse-demo-"))
        self._refresh_to = -1

    def steps(self) -> list[Step]:
        return [
            ("Ingest the Label Studio sample with a bad label", self.ingest_bad),
            ("Materialize a view of box areas", self.materialize),
            ("Ingest the corrected export", self.ingest_fixed),
            ("Refresh the view (as the committed event does)", self.refresh),
            ("Ingest the same export again", self.ingest_again),
            ("Query with SQL", self.query),
        ]

    def ingest_bad(self) -> str:
        """Drop the previous run's datasets, then ingest the sample with one box relabeled to a bad label."""
        for name in self.catalog.datasets():
            if name.startswith(f"{PROJECT}__"):
                self.catalog.drop(name)
        result = self._ingest(self._export(BAD_LABEL))
        annotations = _table(result, ANNOTATIONS)
        reason = next(r for r in result.record()["rejections"])
        self.facts["quarantined"] = f"{reason['key']}: {reason['reason']}"
        return (
            f"{annotations['inserted']} annotation rows -> snapshot {annotations['snapshot_id']}; "
            f"{annotations['rejected']} quarantined in {annotations['rejects_dataset']} ({reason['check']})"
        )

    def materialize(self) -> str:
        """A view computed from the annotations, refreshed later only where they change."""
        annotations = self.catalog.dataset(ANNOTATIONS)
        view = self.catalog.materialize(VIEW, annotations.map_batches(f"{__name__}:box_areas", version="1"))
        return f"{VIEW}: {view.read_all().num_rows} rows from {ANNOTATIONS}"

    def ingest_fixed(self) -> str:
        """The label fixed at the source: the row commits, its reject goes away."""
        result = self._ingest(self._export(FIXED_LABEL))
        annotations = _table(result, ANNOTATIONS)
        self._refresh_to = annotations["snapshot_id"]
        rejects = self.catalog.dataset(f"{ANNOTATIONS}__rejects").count()
        self.facts["rejects_after_fix"] = rejects
        return (
            f"snapshot {annotations['snapshot_id']}: +{annotations['inserted']} ~{annotations['updated']} "
            f"-{annotations['deleted']}; {rejects} rows left in quarantine; events: {len(result.events)}"
        )

    def refresh(self) -> str:
        """The refresh flow `labelhouse serve` starts on each committed event."""
        outcome = refresh_dataset(self.catalog.uri, ANNOTATIONS, self._refresh_to)
        view = next(d for d in outcome.dependents if d["name"] == VIEW)
        self.facts["view_keys_recomputed"] = view["keys_recomputed"]
        return (
            f"{VIEW} -> snapshot {view['snapshot_id']} ({view['keys_recomputed']} keys recomputed); "
            f"{ANNOTATIONS} tagged refreshed at {outcome.snapshot_id}"
        )

    def ingest_again(self) -> str:
        """The same content again: the idempotency key finds the earlier commits."""
        versions = self.catalog.dataset(ANNOTATIONS).versions().num_rows
        result = self._ingest(self._export(FIXED_LABEL))
        unchanged = all(not t["new"] for t in result.record()["datasets"] if t["snapshot_id"] is not None)
        after = self.catalog.dataset(ANNOTATIONS).versions().num_rows
        self.facts["reingest_new_snapshots"] = after - versions
        return f"{after - versions} new snapshots; {'nothing changed' if unchanged else 'something changed'}"

    def query(self) -> str:
        """Labels per class and per annotator, and box area per label from the view."""
        per_class = self.catalog.sql(
            f"SELECT unnest(labels) AS label, count(*) AS n FROM {ANNOTATIONS} "
            "WHERE status != 'draft' GROUP BY 1 ORDER BY 2 DESC, 1"
        ).to_pylist()
        per_annotator = self.catalog.sql(
            f"SELECT annotator, count(*) AS n FROM {ANNOTATIONS} WHERE status != 'draft' GROUP BY 1 ORDER BY 1"
        ).to_pylist()
        areas = self.catalog.sql(
            f"SELECT label, round(sum(area_px)) AS area_px FROM {VIEW} WHERE area_px IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).to_pylist()
        self.facts["labels_per_class"] = {r["label"]: r["n"] for r in per_class}
        self.facts["rows_per_annotator"] = {r["annotator"]: r["n"] for r in per_annotator}
        self.facts["box_area_per_label"] = {r["label"]: r["area_px"] for r in areas}
        return f"{len(per_class)} labels, {len(per_annotator)} annotators, box areas of {len(areas)} labels"

    def _export(self, label: str) -> Path:
        """The bundled export with annotation 2's box labeled `label`."""
        tasks = json.loads(sample_path(LABEL_STUDIO_EXPORT).read_text(encoding="utf-8"))
        tasks[0]["annotations"][1]["result"][0]["value"]["rectanglelabels"] = [label]
        path = self._workdir / f"export-{label}.json"
        path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
        return path

    def _ingest(self, path: Path) -> IngestResult:
        result: IngestResult = ingest_label_studio_export(
            str(path), catalog=self.catalog.uri, project=PROJECT, config=str(sample_path(LABEL_STUDIO_CONFIG))
        )
        self.runs.append(result)
        return result


def _table(result: IngestResult, dataset: str) -> dict[str, Any]:
    return next(t for t in result.record()["datasets"] if t["dataset"] == dataset)

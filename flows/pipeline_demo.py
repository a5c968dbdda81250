"""The orchestrated half of `labelhouse demo`: the bundled Label Studio and COCO samples through the whole path.

Ingest the Label Studio sample with a bad label injected (the row is quarantined, the rest commits) and
the COCO sample, derive a materialized view, embed its labels with the packaged text model on a local
Ray and index the embeddings, ingest the corrected export (the row commits, its reject goes away),
refresh the view, the embeddings and the index up to the new snapshot, search the index, ingest the
same export again (nothing changes), and query with SQL. Flows run in this process on Prefect's
ephemeral API unless PREFECT_API_URL names a server. The demo projects' datasets are dropped first, so
every run gives the same result.
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
from tasks.embeddings import embed_texts

from .files import ingest_coco
from .ingest import IngestResult
from .label_studio import ingest_label_studio_export
from .refresh import refresh_dataset
from .samples import COCO_INSTANCES, LABEL_STUDIO_CONFIG, LABEL_STUDIO_EXPORT, sample_path

PROJECT = "demo"
COCO_PROJECT = "demococo"
ANNOTATIONS = f"{PROJECT}__annotations"
VIEW = f"{PROJECT}__box_areas"
EMBEDDINGS = f"{PROJECT}__label_embeddings"
INDEX = f"{PROJECT}__label_index"
SEARCH_TEXT = "a person riding a bike"
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
            ("Ingest the COCO sample", self.ingest_coco),
            ("Materialize a view of box areas", self.materialize),
            ("Embed the view's labels on local Ray and index them", self.embed),
            ("Ingest the corrected export", self.ingest_fixed),
            ("Refresh the view, embeddings and index (as the committed event does)", self.refresh),
            ("Search the label index", self.search),
            ("Ingest the same export again", self.ingest_again),
            ("Query with SQL", self.query),
        ]

    def ingest_bad(self) -> str:
        """Drop the previous run's datasets, then ingest the sample with one box relabeled to a bad label."""
        for name in self.catalog.vector_indexes():
            if name.startswith(f"{PROJECT}__"):
                self.catalog.drop_vector_index(name)
        for name in self.catalog.datasets():
            if name.startswith((f"{PROJECT}__", f"{COCO_PROJECT}__")):
                self.catalog.drop(name)
        result = self._ingest(self._export(BAD_LABEL))
        annotations = _table(result, ANNOTATIONS)
        reason = next(r for r in result.record()["rejections"])
        self.facts["quarantined"] = f"{reason['key']}: {reason['reason']}"
        return (
            f"{annotations['inserted']} annotation rows -> snapshot {annotations['snapshot_id']}; "
            f"{annotations['rejected']} quarantined in {annotations['rejects_dataset']} ({reason['check']})"
        )

    def ingest_coco(self) -> str:
        """The bundled COCO instances file: images become items, boxes and polygons annotations; its
        degenerate polygon is quarantined (1 of 7 rows, so the failure budget is raised to 20%)."""
        result: IngestResult = ingest_coco(
            str(sample_path(COCO_INSTANCES)), catalog=self.catalog.uri, project=COCO_PROJECT, max_failure_rate=0.2
        )
        self.runs.append(result)
        tables = result.record()["datasets"]
        self.facts["coco_rows"] = {t["dataset"]: t["inserted"] for t in tables}
        self.facts["coco_quarantined"] = sum(t["rejected"] for t in tables)
        landed = ", ".join(f"{t['dataset']}: +{t['inserted']}" for t in tables)
        return f"{landed}; {self.facts['coco_quarantined']} quarantined"

    def materialize(self) -> str:
        """A view computed from the annotations, refreshed later only where they change."""
        annotations = self.catalog.dataset(ANNOTATIONS)
        view = self.catalog.materialize(VIEW, annotations.map_batches(f"{__name__}:box_areas", version="1"))
        return f"{VIEW}: {view.read_all().num_rows} rows from {ANNOTATIONS}"

    def embed(self) -> str:
        """Text embeddings of each view row's label (a view over the view), computed on a local Ray, and an
        index over them; both follow the annotations from now on through the refresh."""
        import ray  # started here, stopped after: the rest of the demo does not need it

        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            view = self.catalog.dataset(VIEW).map_batches("tasks.embeddings:text_embeddings", version="1")
            embeddings = self.catalog.materialize(EMBEDDINGS, view, engine="ray")
        finally:
            if started:
                ray.shutdown()
        index = self.catalog.create_vector_index(INDEX, EMBEDDINGS, "embedding", metric="cos")
        return f"{EMBEDDINGS}: {embeddings.read_all().num_rows} rows embedded on Ray; {INDEX} built ({index.metric})"

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
        index = next(d for d in outcome.dependents if d["name"] == INDEX)
        self.facts["index_vectors_added"] = index["added"]
        views = ", ".join(f"{d['name']} -> {d['snapshot_id']}" for d in outcome.dependents if "snapshot_id" in d)
        return (
            f"{views} ({view['keys_recomputed']} view keys recomputed); {INDEX}: +{index['added']} "
            f"-{index['removed']} vectors (incremental: {not index['full']}); {ANNOTATIONS} tagged refreshed"
        )

    def search(self) -> str:
        """The nearest labels to a sentence: the relabeled box (now a cyclist) is found by meaning."""
        hits = self.catalog.vector_index(INDEX).search(embed_texts([SEARCH_TEXT])[0], k=3)
        labels = self.catalog.dataset(EMBEDDINGS).take(hits.column("id").to_pylist(), columns=["id", "label"])
        by_id = dict(zip(labels.column("id").to_pylist(), labels.column("label").to_pylist(), strict=True))
        nearest = [by_id[i] for i in hits.column("id").to_pylist()]
        distances = hits.column("_distance").to_pylist()
        self.facts["nearest_labels"] = nearest
        found = ", ".join(f"{label} ({d:.2f})" for label, d in zip(nearest, distances, strict=True))
        return f"{SEARCH_TEXT!r}: {found}"

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

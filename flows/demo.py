"""The storage tour behind `labelhouse demo`: a small `frames` dataset written, versioned and read back.

The tour is a list of steps so a caller can show progress; each step returns one line saying what it
showed, and the tour collects the numbers worth summarizing in `facts`. The data is deterministic, and
the dataset is dropped and created again on every run, so a run gives the same rows and versions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from storage import Catalog, Dataset

DATASET = "frames"
FIRST_BATCH = range(1, 9)
RELABELED = 3  # a cat the review turns into a dog
DELETED = 8
IMAGE_BYTES = 4096
LABELS = ("cat", "dog", "bird")
ANNOTATORS = ("ana", "ben", "chen")

BOX = pa.struct([("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()), ("h", pa.float64())])
SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("image_uri", pa.string()),
        pa.field("label", pa.string()),
        pa.field("annotator", pa.string()),
        pa.field("box", BOX),
        pa.field("image", pa.binary()),
    ]
)

Step = tuple[str, Callable[[], str]]


def frames(ids: Sequence[int]) -> pa.Table:
    """Deterministic frames: labels and annotators cycle with the id, each image is seeded by its id."""
    return pa.table(
        {
            "id": list(ids),
            "image_uri": [f"images/frame-{i:04d}.png" for i in ids],
            "label": [LABELS[i % len(LABELS)] for i in ids],
            "annotator": [ANNOTATORS[i % len(ANNOTATORS)] for i in ids],
            "box": [{"x": 8.0 * i, "y": 6.0 * i, "w": 64.0, "h": 48.0} for i in ids],
            "image": [random.Random(i).randbytes(IMAGE_BYTES) for i in ids],
        },
        schema=SCHEMA,
    )


class Tour:
    """The tour on one catalog; run the `steps()` in order."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.facts: dict[str, Any] = {}
        self._ds: Dataset | None = None
        self._first_batch = -1

    @property
    def dataset(self) -> Dataset:
        """The tour's dataset (after the first step)."""
        if self._ds is None:
            raise RuntimeError("the tour's first step creates the dataset; run the steps in order")
        return self._ds

    def steps(self) -> list[Step]:
        """(title, step) pairs in the order they must run."""
        return [
            (f"Create the {DATASET} dataset", self.create),
            ("Append frames", self.append),
            ("Upsert a relabel", self.relabel),
            ("Delete a frame", self.delete),
            ("Tag the reviewed version", self.tag),
            ("Restore the first batch", self.restore),
            ("Read back two versions", self.read_back),
            ("Count with a filter", self.count),
            ("Validate the dataset", self.validate),
        ]

    def create(self) -> str:
        """Drop the previous run's dataset and create it empty."""
        dropped = DATASET in self.catalog
        if dropped:
            self.catalog.drop(DATASET)
        self._ds = self.catalog.create_dataset(DATASET, SCHEMA, primary_keys=["id"], record_fields=["image"])
        again = " (dropped the previous run's)" if dropped else ""
        return f"created {DATASET} keyed by id, with image as a record field{again}"

    def append(self) -> str:
        """Append the first batch, then retry it with the same idempotency key."""
        batch = frames(FIRST_BATCH)
        snap = self.dataset.append(batch, idempotency_key="demo:first-batch", message="first batch")
        retry = self.dataset.append(batch, idempotency_key="demo:first-batch", message="first batch")
        self._first_batch = snap.id
        self.facts["retried_append"] = f"no-op: returned snapshot {retry.id} again"
        return f"{batch.num_rows} frames -> snapshot {snap.id}; the retry with the same key returned {retry.id}"

    def relabel(self) -> str:
        """Replace one whole row by key (read first, record field included, so the image is kept)."""
        current = self.dataset.read_all(pc.field("id") == RELABELED, columns=SCHEMA.names)
        row = current.to_pylist()[0]
        before = row["label"]
        row.update(label="dog", annotator="reviewer")
        snap = self.dataset.upsert(pa.Table.from_pylist([row], schema=SCHEMA), message=f"relabel frame {RELABELED}")
        return f"frame {RELABELED}: {before} -> dog -> snapshot {snap.id}"

    def delete(self) -> str:
        """Delete by filter: a deletion vector, no data file rewritten."""
        snap = self.dataset.delete(pc.field("id") == DELETED, message=f"drop frame {DELETED}")
        return f"frame {DELETED} -> snapshot {snap.id} ({snap.summary['files_added']} data files written)"

    def tag(self) -> str:
        """Name the reviewed head."""
        snap = self.dataset.tag("reviewed")
        return f"snapshot {snap.id} is 'reviewed'"

    def restore(self) -> str:
        """Bring the first batch back as a new snapshot."""
        snap = self.dataset.restore(self._first_batch, message="back to the first batch")
        return f"snapshot {self._first_batch}'s content -> snapshot {snap.id}; 'reviewed' still names the review"

    def read_back(self) -> str:
        """Read the reviewed version and the head, and the relabeled frame's image from the record field."""
        reviewed = self.dataset.read_all(version="reviewed")
        head = self.dataset.read_all()
        image = self.dataset.take([RELABELED], columns=["image"]).column("image")[0].as_py()
        self.facts["rows_at_reviewed"] = reviewed.num_rows
        self.facts["rows_now"] = head.num_rows
        self.facts[f"frame_{RELABELED}_at_reviewed"] = _label(reviewed, RELABELED)
        self.facts[f"frame_{RELABELED}_now"] = _label(head, RELABELED)
        self.facts["image_bytes_per_frame"] = len(image)
        return f"'reviewed': {reviewed.num_rows} rows; head: {head.num_rows} rows; image of {len(image)} bytes"

    def count(self) -> str:
        """Count cats at both versions (files pruned by statistics, rows filtered)."""
        cats = pc.field("label") == "cat"
        self.facts["cats_at_reviewed"] = self.dataset.count(cats, version="reviewed")
        self.facts["cats_now"] = self.dataset.count(cats)
        return f"cats: {self.facts['cats_at_reviewed']} at 'reviewed', {self.facts['cats_now']} now"

    def validate(self) -> str:
        """Check every file of every snapshot."""
        report = self.dataset.validate()
        self.facts["validated"] = f"{report.snapshots} snapshots, {report.data_files} data files"
        return f"{self.facts['validated']}, {report.deletion_vectors} deletion vectors: all present and intact"


def _label(table: pa.Table, frame_id: int) -> str:
    return str(table.filter(pc.field("id") == frame_id).column("label")[0].as_py())

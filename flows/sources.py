"""The ingest flows by source name: what `labelhouse ingest <source>` runs and `labelhouse serve` deploys.

A source plugs in with a flow that stages its batches and hands them to `flows.ingest.commit_batches`
(or, like WebDataset, has workers write data files and commits them once), and one entry here.
"""

from __future__ import annotations

from typing import Any

from prefect import Flow

from .bucket import ingest_s3_bucket
from .files import ingest_coco, ingest_labelbox
from .ingest import IngestResult
from .label_studio import ingest_label_studio_export, ingest_label_studio_pull, ingest_label_studio_webhook
from .webdataset import ingest_webdataset

IngestFlow = Flow[..., IngestResult]

SOURCES: dict[str, IngestFlow] = {
    "label-studio": ingest_label_studio_export,
    "label-studio-pull": ingest_label_studio_pull,
    "label-studio-webhook": ingest_label_studio_webhook,
    "coco": ingest_coco,
    "labelbox": ingest_labelbox,
    "s3-bucket": ingest_s3_bucket,
    "webdataset": ingest_webdataset,
}


def ingest_flow(source: str) -> IngestFlow:
    """The ingest flow of `source`; KeyError naming the known sources otherwise."""
    try:
        return SOURCES[source]
    except KeyError:
        raise KeyError(f"no ingest source {source!r}; sources: {', '.join(sorted(SOURCES))}") from None


def run_ingest(source: str, **parameters: Any) -> IngestResult:
    """Run a source's ingest flow in this process, without flow retries (a person is waiting)."""
    result: IngestResult = ingest_flow(source).with_options(retries=0)(**parameters)
    return result

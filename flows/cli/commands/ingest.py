"""`labelhouse ingest <source>`: run a source's ingest flow here, then print what it committed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Group

from ...settings import DEFAULT_PROJECT
from ..options import DEFAULT_CATALOG, CatalogOption, JsonOption
from ..output import emit
from ..tables import records_table

if TYPE_CHECKING:
    from ...ingest import IngestResult

ProjectOption = Annotated[
    str, typer.Option("--project", help="Labelhouse project: its datasets are <project>__items, __annotations...")
]
MaxFailureRateOption = Annotated[
    float,
    typer.Option(
        "--max-failure-rate", min=0.0, max=1.0, help="Refuse the whole batch if more of a table's rows fail checks."
    ),
]
DATASET_COLUMNS = ["dataset", "snapshot_id", "inserted", "updated", "deleted", "rejected", "note"]


def _ingest(source: str, as_json: bool, **options: object) -> None:
    """Run a source's ingest flow and print what it committed."""
    from ...sources import run_ingest  # imports Prefect and the checks: only ingesting pays for that

    print_result(run_ingest(source, **options), as_json)


def label_studio(
    export: Annotated[
        Path, typer.Argument(help="Label Studio export: JSON, JSON_MIN or snapshot (recognised from the content).")
    ],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Labeling config XML: labels are checked against it (JSON_MIN needs it)."),
    ] = None,
    project: ProjectOption = DEFAULT_PROJECT,
    max_failure_rate: MaxFailureRateOption = 0.1,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Ingest a Label Studio export of a whole project: the project's datasets become equal to it.

    Rows failing the checks go to <dataset>__rejects; ingesting the same export again changes nothing.
    """
    _ingest(
        "label-studio",
        as_json,
        path=str(export),
        catalog=catalog,
        project=project,
        config=str(config) if config else None,
        max_failure_rate=max_failure_rate,
    )


def coco(
    instances: Annotated[Path, typer.Argument(help="COCO instances JSON file.")],
    images: Annotated[
        Path | None, typer.Option("--images", help="Directory of the images: stored as blobs, sizes checked.")
    ] = None,
    project: ProjectOption = DEFAULT_PROJECT,
    max_failure_rate: MaxFailureRateOption = 0.1,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Ingest a COCO instances file of a whole project; labels are checked against its categories."""
    _ingest(
        "coco",
        as_json,
        path=str(instances),
        image_dir=str(images) if images else None,
        catalog=catalog,
        project=project,
        max_failure_rate=max_failure_rate,
    )


def labelbox(
    export: Annotated[Path, typer.Argument(help="Labelbox export v2 NDJSON file.")],
    chunk_lines: Annotated[int, typer.Option("--chunk-lines", min=1, help="Data rows per committed batch.")] = 1000,
    project: ProjectOption = DEFAULT_PROJECT,
    max_failure_rate: MaxFailureRateOption = 0.1,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Ingest a Labelbox NDJSON export in batches; malformed lines are quarantined with their line number."""
    _ingest(
        "labelbox",
        as_json,
        path=str(export),
        chunk_lines=chunk_lines,
        catalog=catalog,
        project=project,
        max_failure_rate=max_failure_rate,
    )


def s3_bucket(
    url: Annotated[str, typer.Argument(help="The objects to ingest: s3://bucket or s3://bucket/prefix.")],
    endpoint_url: Annotated[
        str | None,
        typer.Option("--endpoint-url", help="An S3-compatible endpoint (MinIO, moto); default: AWS."),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="The bucket's region.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile to take credentials from.")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Parallel downloads.")] = 16,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Objects per committed batch.")] = 1000,
    project: ProjectOption = DEFAULT_PROJECT,
    max_failure_rate: MaxFailureRateOption = 0.1,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Ingest the objects under an S3 prefix that are new or changed since the last ingest of it.

    Each object is an item with its bytes, sha256, content type and image size; corrupt images are
    quarantined with the reason. Credentials come from the AWS environment, profile or role.
    """
    _ingest(
        "s3-bucket",
        as_json,
        url=url,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        threads=threads,
        batch_size=batch_size,
        catalog=catalog,
        project=project,
        max_failure_rate=max_failure_rate,
    )


def webdataset(
    pattern: Annotated[
        str,
        typer.Argument(
            help="Shards: paths or s3://bucket/keys with brace ranges, e.g. 'data/train-{000000..000099}.tar' "
            "(quote it so the shell leaves the braces alone)."
        ),
    ],
    engine: Annotated[
        Literal["local", "ray"],
        typer.Option("--engine", help="local: threads of this process; ray: Ray tasks, one per shard."),
    ] = "local",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Threads, or CPUs of the local Ray started for the run.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="A running Ray cluster (default: the running or a local Ray).")
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option("--endpoint-url", help="For s3:// shards: an S3-compatible endpoint (MinIO, moto)."),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="For s3:// shards: the bucket's region.")] = None,
    project: ProjectOption = DEFAULT_PROJECT,
    max_failure_rate: MaxFailureRateOption = 0.1,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Ingest WebDataset tar shards in parallel, all in one commit; ingesting the same shards again changes nothing.

    Samples failing the checks and unusable members (links, paths outside the shard) are quarantined.
    """
    _ingest(
        "webdataset",
        as_json,
        pattern=pattern,
        engine=engine,
        workers=workers,
        ray_address=ray_address,
        endpoint_url=endpoint_url,
        region=region,
        catalog=catalog,
        project=project,
        max_failure_rate=max_failure_rate,
    )


def print_result(result: IngestResult, as_json: bool) -> None:
    """The datasets an ingest changed, its rejected rows and failed checks (or all of it as JSON)."""
    record = result.record()
    shown = [{**t, "note": "" if t["new"] else "unchanged: committed before"} for t in record["datasets"]]
    failed = [c for c in record["checks"] if not c["passed"]]

    def render() -> Group:
        parts = [records_table(shown, DATASET_COLUMNS, f"Ingested into {result.project} in {result.catalog}")]
        if record["rejections"]:
            parts.append(records_table(record["rejections"], ["dataset", "key", "check", "reason"], "Rejected rows"))
        if failed:
            parts.append(records_table(failed, ["table", "check", "failing_rows"], "Failed checks"))
        return Group(*parts)

    emit(record, as_json, render)

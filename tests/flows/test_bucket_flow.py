"""The S3 bucket ingest flow on Prefect's test harness against moto's S3 server on 127.0.0.1: end to end,
reruns, a crash between write and commit, a corrupt object, thousands of objects, and its deployment."""

from __future__ import annotations

import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.bucket import ingest_s3_bucket
from flows.cli import app
from flows.deployments import ServeOptions, build_deployments
from storage import Catalog, faults
from tasks.s3_bucket import latest_watermark

pytestmark = pytest.mark.usefixtures("harness")


def png(width: int, height: int) -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"IEND"


def put(moto_s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    client = moto_s3.client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=bucket, Key=item[0], Body=item[1]), objects.items()))


def frames(start: int, stop: int) -> dict[str, bytes]:
    return {f"in/{n:05d}.png": png(1 + n % 50, 7) for n in range(start, stop)}


def totals(result: Any, dataset: str) -> dict[str, int]:
    """Rows inserted, updated and rejected in `dataset` over every batch of the run, and its commits."""
    tables = [t for t in result.record()["datasets"] if t["dataset"] == dataset]
    sums = {column: sum(t[column] for t in tables) for column in ("inserted", "updated", "rejected")}
    return {**sums, "commits": sum(t["snapshot_id"] is not None for t in tables)}


def upserts(catalog: Catalog, dataset: str) -> int:
    return sum(v["operation"] == "upsert" for v in catalog.dataset(dataset).versions().to_pylist())


def test_ingest_quarantines_a_corrupt_image_and_a_rerun_takes_only_new_objects(moto_s3: Any, tmp_path: Path) -> None:
    bucket, catalog = moto_s3.new_bucket(), str(tmp_path / "lakehouse")
    put(moto_s3, bucket, {**frames(0, 12), "in/broken.png": b"\x89PNG\r\n\x1a\ntruncated", "out/x.png": png(1, 1)})
    url, endpoint = f"s3://{bucket}/in/", moto_s3.endpoint_url

    first = ingest_s3_bucket(url, catalog=catalog, project="b", endpoint_url=endpoint, batch_size=5)
    cat = Catalog(catalog)
    items = cat.dataset("b__items")
    assert items.count() == 12
    assert totals(first, "b__items") == {"inserted": 12, "updated": 0, "rejected": 1, "commits": 3}
    assert len(first.batches) == 3 and upserts(cat, "b__items") == 3  # 13 objects, 5 per batch
    [rejection] = first.record()["rejections"]
    assert rejection["check"] == "source_format" and rejection["key"] == "/in~1broken.png"
    assert f"s3://{bucket}/in/broken.png is typed image/png" in rejection["reason"]
    [reject] = cat.dataset("b__items__rejects").read_all().to_pylist()
    assert reject["source_ref"] == url and "re-upload it" in reject["reason"]
    row = items.take([f"s3:{bucket}/in/00003.png"], columns=["width", "height", "data"]).to_pylist()[0]
    assert (row["width"], row["height"], json.loads(row["data"])["content_type"]) == (4, 7, "image/png")
    head = items.snapshot()
    watermark = latest_watermark(items, bucket, "in/")
    assert watermark.since is not None and head.properties["flow_run_id"] == first.flow_run_id
    assert head.idempotency_key is not None and head.idempotency_key.startswith(f"s3:{first.flow_run_id}:")
    assert len(first.events) >= 3  # a committed event per batch for the items at least

    # Two new objects and one overwritten: exactly those land, in one more items commit.
    put(moto_s3, bucket, {**frames(12, 14), "in/00000.png": png(99, 98)})
    second = ingest_s3_bucket(url, catalog=catalog, project="b", endpoint_url=endpoint)
    assert totals(second, "b__items") == {"inserted": 2, "updated": 1, "rejected": 1, "commits": 1}
    assert items.count() == 14 and upserts(cat, "b__items") == 4
    assert items.take([f"s3:{bucket}/in/00000.png"], columns=["width"]).to_pylist() == [{"width": 99}]
    assert cat.dataset("b__items__rejects").count() == 1  # the corrupt object is still quarantined once

    third = ingest_s3_bucket(url, catalog=catalog, project="b", endpoint_url=endpoint)
    assert totals(third, "b__items")["commits"] == 0 and upserts(cat, "b__items") == 4


def test_a_crash_between_write_and_commit_then_retry_lands_each_object_once(moto_s3: Any, tmp_path: Path) -> None:
    """The second batch's items commit crashes between writing its files and its log entry on every task
    attempt; the flow is retried with the same run id, re-lists and commits only the second batch."""
    bucket, catalog = moto_s3.new_bucket(), str(tmp_path / "lakehouse")
    put(moto_s3, bucket, frames(0, 40))
    reached: list[str] = []

    def crash_second_batch(name: str) -> None:
        if name == "commit.before_log":
            reached.append(name)
            if 2 <= len(reached) <= 4:  # 1: the first batch; 2-4: the second batch's commit and its 2 retries
                raise OSError("injected crash between write and commit")

    faults.set_hook(crash_second_batch)
    try:
        result = ingest_s3_bucket.with_options(retry_delay_seconds=1)(
            f"s3://{bucket}/", catalog=catalog, project="r", endpoint_url=moto_s3.endpoint_url, batch_size=20
        )
    finally:
        faults.set_hook(None)
    assert len(reached) == 5
    cat = Catalog(catalog)
    items = cat.dataset("r__items")
    assert items.count() == 40 and upserts(cat, "r__items") == 2
    assert items.validate().snapshots == 3  # create + two upserts: the crashed attempts left no log entry
    [batch] = result.batches  # the retried attempt committed the second batch only
    assert items.snapshot().idempotency_key == f"{batch.idempotency_key}:items"
    assert latest_watermark(items, bucket, "").last_key == "in/00039.png"


@pytest.mark.slow
def test_thousands_of_small_objects(moto_s3: Any, tmp_path: Path) -> None:
    bucket, catalog = moto_s3.new_bucket(), str(tmp_path / "lakehouse")
    put(moto_s3, bucket, frames(0, 2000))
    result = ingest_s3_bucket(
        f"s3://{bucket}/in", catalog=catalog, project="t", endpoint_url=moto_s3.endpoint_url, batch_size=500
    )
    assert len(result.batches) == 4 and totals(result, "t__items")["inserted"] == 2000
    items = Catalog(catalog).dataset("t__items")
    assert items.count() == 2000
    sizes = items.read_all(columns=["width"])["width"].to_pylist()
    assert sorted(set(sizes)) == list(range(1, 51))


def test_cli_ingests_a_bucket_and_reports_a_missing_one(moto_s3: Any, tmp_path: Path) -> None:
    bucket, catalog = moto_s3.new_bucket(), str(tmp_path / "lakehouse")
    put(moto_s3, bucket, frames(0, 3))
    args = ["--endpoint-url", moto_s3.endpoint_url, "--catalog", catalog, "--project", "c"]
    result = CliRunner().invoke(app, ["ingest", "s3-bucket", f"s3://{bucket}/in/", *args, "--json"])
    assert result.exit_code == 0, result.output
    assert {d["dataset"]: d["inserted"] for d in json.loads(result.stdout)["datasets"]}["c__items"] == 3
    missing = CliRunner().invoke(app, ["ingest", "s3-bucket", "s3://no-such-bucket/x", *args])
    assert missing.exit_code == 1 and "bucket 'no-such-bucket' does not exist" in missing.stderr
    bad = CliRunner().invoke(app, ["ingest", "s3-bucket", "/not/s3", *args])
    assert bad.exit_code == 1 and "is not an S3 URL" in bad.stderr


def test_polling_is_scheduled_only_when_a_bucket_is_configured() -> None:
    def polling(**options: Any) -> Any:
        deployments = build_deployments(ServeOptions(catalog="/tmp/lh-catalog", project="p", **options))
        return next(d for d in deployments if (d.flow_name, d.name) == ("ingest-s3-bucket", "polling"))

    assert polling().schedules == []
    cron = polling(bucket_url="s3://b/in/", bucket_endpoint_url="http://127.0.0.1:9", bucket_cron="*/2 * * * *")
    [schedule] = cron.schedules
    assert schedule.schedule.cron == "*/2 * * * *"
    assert cron.parameters["url"] == "s3://b/in/" and cron.parameters["endpoint_url"] == "http://127.0.0.1:9"
    [every] = polling(bucket_url="s3://b/in/", bucket_interval_seconds=30).schedules
    assert every.schedule.interval.total_seconds() == 30

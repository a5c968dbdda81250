"""S3 prefix ingest against moto's S3 server on 127.0.0.1: thousands of objects, watermark, crash, rerun."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

import tasks.s3_bucket.ingest as bucket_ingest
from storage import Catalog
from storage.groundtruth import dataset_names
from tasks.media import content_type, image_size, media_type
from tasks.s3_bucket import S3Options, ingest_prefix, latest_watermark

OBJECTS = 2000


def png(width: int, height: int) -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"IEND"


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def body(n: int) -> tuple[str, bytes]:
    kind = n % 4
    if kind == 0:
        return f"frames/{n:05d}.png", png(10 + n % 7, 20)
    if kind == 1:
        return f"frames/{n:05d}.jpg", jpeg(30, 5 + n % 3)
    if kind == 2:
        return f"frames/{n:05d}.gif", gif(8, 8)
    return f"frames/{n:05d}.txt", f"note {n} ✓".encode()


def test_headers_give_sizes_and_types():
    assert image_size(png(640, 480)) == (640, 480)
    assert image_size(jpeg(1920, 1080)) == (1920, 1080)
    assert image_size(gif(3, 2)) == (3, 2)
    assert image_size(b"not an image") is None and image_size(b"\xff\xd8\xff\xe0") is None
    assert content_type("x.bin", png(1, 1)) == "image/png"  # the bytes win over the name
    assert content_type("notes.txt") == "text/plain" and media_type("text/plain") == "text"
    assert media_type("video/mp4; codecs=x") == "video" and media_type(None) == "unknown"


@pytest.fixture
def bucket(moto_s3):
    name = moto_s3.new_bucket()
    client = moto_s3.client()

    def put(n: int) -> None:
        key, data = body(n)
        client.put_object(Bucket=name, Key=key, Body=data, Metadata={"camera": f"cam{n % 3}"})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(OBJECTS)))
    client.put_object(Bucket=name, Key="frames/", Body=b"")  # a folder placeholder
    client.put_object(Bucket=name, Key="elsewhere/skip.png", Body=png(1, 1))
    return name


def _options(moto_s3) -> S3Options:
    return S3Options(endpoint_url=moto_s3.endpoint_url, region="us-east-1", access_key="testing", secret_key="testing")


@pytest.mark.slow
@pytest.mark.integration
def test_ingest_new_objects_rerun_and_crash(moto_s3, bucket, tmp_path, monkeypatch):
    catalog = Catalog(tmp_path / "lake")
    items = dataset_names("bkt")["items"]
    options = _options(moto_s3)

    # A crash (lost connection) while downloading the second batch: the first is committed with its
    # watermark; the rerun neither skips nor duplicates anything.
    real_fetch = bucket_ingest._fetch
    calls = 0

    def fail_in_second_batch(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > 1000:
            raise ConnectionError("connection lost")
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(bucket_ingest, "_fetch", fail_in_second_batch)
    with pytest.raises(ConnectionError):
        ingest_prefix(catalog, "bkt", bucket, "frames/", options=options, batch_size=1000)
    assert catalog.dataset(items).count() == 1000
    monkeypatch.setattr(bucket_ingest, "_fetch", real_fetch)

    result = ingest_prefix(catalog, "bkt", bucket, "frames/", options=options, batch_size=1000)
    assert (result.listed, result.new) == (OBJECTS, OBJECTS - 1000)
    dataset = catalog.dataset(items)
    assert dataset.count() == OBJECTS
    columns = ["uri", "width", "height", "blob", "data"]
    (found,) = dataset.take([f"s3:{bucket}/frames/00004.png"], columns=columns).to_pylist()
    key, data = body(4)
    assert (found["uri"], found["width"], found["height"], found["blob"]) == (f"s3://{bucket}/{key}", 14, 20, data)
    description = json.loads(found["data"])
    assert description["sha256"] == hashlib.sha256(data).hexdigest() and description["content_type"] == "image/png"
    jpg = dataset.take([f"s3:{bucket}/frames/00005.jpg"], columns=["width", "height", "metadata"]).to_pylist()[0]
    assert (jpg["width"], jpg["height"], json.loads(jpg["metadata"])) == (30, 7, {"camera": "cam2"})
    watermark = latest_watermark(dataset, bucket, "frames/")
    assert watermark.since is not None and watermark == result.watermark

    # One new object and one overwritten: exactly those two, in one more snapshot.
    snapshots = dataset.versions().num_rows
    client = moto_s3.client()
    client.put_object(Bucket=bucket, Key="frames/new.png", Body=png(5, 6))
    client.put_object(Bucket=bucket, Key="frames/00000.png", Body=png(99, 98))
    again = ingest_prefix(catalog, "bkt", bucket, "frames/", options=options)
    assert again.new == 2 and dataset.count() == OBJECTS + 1
    assert dataset.versions().num_rows == snapshots + 1
    updated = dataset.take([f"s3:{bucket}/frames/00000.png"], columns=["width"]).to_pylist()
    assert updated == [{"width": 99}]


@pytest.mark.integration
def test_corrupt_images_are_quarantined_and_content_restored_to_an_old_version_is_ingested(moto_s3, tmp_path):
    catalog, name, client = Catalog(tmp_path / "lake"), moto_s3.new_bucket(), moto_s3.client()
    client.put_object(Bucket=name, Key="broken/a.png", Body=png(2, 3))
    client.put_object(Bucket=name, Key="broken/bad.jpg", Body=b"\xff\xd8\xff\xe0garbage")  # a segment runs off the end
    client.put_object(Bucket=name, Key="broken/huge.png", Body=png(2**32 - 1, 1))  # a width no image has
    first = ingest_prefix(catalog, "q", name, "broken/", options=_options(moto_s3))
    assert first.new == 3 and [b.source_rejects for b in first.batches] == [2]
    items = catalog.dataset(dataset_names("q")["items"])
    assert items.read_all(columns=["source_id"])["source_id"].to_pylist() == [f"{name}/broken/a.png"]
    rejects = catalog.dataset(dataset_names("q")["items"] + "__rejects").read_all().to_pylist()
    where = f"s3://{name}/broken/#/broken~1"
    assert sorted(r["row_key"] for r in rejects) == [f"{where}bad.jpg", f"{where}huge.png"]
    assert all("corrupt or truncated" in r["reason"] and json.loads(r["row"])["text"] for r in rejects)

    # An object overwritten, then put back as it was: the ETag of an earlier batch, and still a change.
    for size in ((2, 3), (5, 5), (2, 3)):
        client.put_object(Bucket=name, Key="ok/a.png", Body=png(*size))
        assert ingest_prefix(catalog, "q", name, "ok/", options=_options(moto_s3)).new == 1
        assert items.take([f"s3:{name}/ok/a.png"], columns=["width"]).to_pylist() == [{"width": size[0]}]

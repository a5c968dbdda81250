"""Ingest every new object under an S3 prefix as an item whose blob is the object.

An object is the item `<source>:<bucket>/<key>` (so re-ingesting an object is an upsert), with `uri`
`s3://bucket/key`, the bytes in `blob`, `updated_at` its LastModified, and in `data` its ETag, size,
sha256, content type (sniffed from the bytes, else the extension, else what S3 says) and storage
metadata; user metadata (x-amz-meta-*) is `metadata`; width and height come from image headers.
Objects are processed oldest first in batches: each batch is downloaded by a thread pool and committed
through the checks with the watermark that covers it (see `watermark.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from storage import Catalog, Dataset
from storage.groundtruth import ensure_groundtruth, item_id

from ..changes import ChangeSet, canonical_table
from ..commit import CommitOutcome, commit_changes
from ..errors import SourceError
from ..json_node import escape_token
from ..json_source import canonical_sha256
from ..media import HEADER_BYTES, content_type, image_size, media_type
from ..provenance import Provenance
from .client import S3Options
from .watermark import Watermark, latest_watermark, property_name

SOURCE = "s3"
DEFAULT_OVERLAP = timedelta(minutes=10)


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class BucketIngest:
    """What a run listed, found new, and committed (one outcome per batch), and where it left off."""

    listed: int
    new: int
    watermark: Watermark
    batches: list[CommitOutcome] = field(default_factory=list)


def ingest_prefix(
    catalog: Catalog,
    project: str,
    bucket: str,
    prefix: str = "",
    *,
    options: S3Options | None = None,
    threads: int = 16,
    batch_size: int = 1000,
    overlap: timedelta = DEFAULT_OVERLAP,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    max_failure_rate: float = 0.1,
) -> BucketIngest:
    """Ingest the objects under `s3://bucket/prefix` that are new or changed since the last run."""
    options = options or S3Options(max_pool_connections=max(threads, 10))
    client = options.client()
    items = ensure_groundtruth(catalog, project).items
    previous = latest_watermark(items, bucket, prefix)
    listed = list(_list(client, bucket, prefix))
    fresh = _new_objects(items, bucket, listed, previous, source)
    watermark = previous
    provenance = Provenance(source=source, source_ref=f"s3://{bucket}/{prefix}", flow_run_id=flow_run_id)
    batches = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(fresh), batch_size):
            batch = fresh[start : start + batch_size]
            rest = fresh[start + batch_size :]
            watermark = _advance(watermark, batch, rest, listed, overlap)
            # An object changed or deleted since the listing is left for the next run, which lists it anew.
            rows = [row for row in pool.map(lambda obj: _item(client, bucket, obj, provenance), batch) if row]
            key = f"{source}:objects:{canonical_sha256([bucket, prefix, [(o.key, o.etag) for o in batch]])}"
            batches.append(
                commit_changes(
                    catalog,
                    project,
                    ChangeSet(
                        items=canonical_table("items", rows),
                        annotations=canonical_table("annotations", []),
                        predictions=canonical_table("predictions", []),
                    ),
                    idempotency_key=key,
                    max_failure_rate=max_failure_rate,
                    message=f"{len(batch)} object(s) from s3://{bucket}/{prefix}",
                    properties={property_name(bucket, prefix): watermark.to_json()},
                )
            )
    return BucketIngest(listed=len(listed), new=len(fresh), watermark=watermark, batches=batches)


def _list(client: Any, bucket: str, prefix: str) -> Iterator[ListedObject]:
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith("/") and entry["Size"] == 0:
                    continue  # a "folder" placeholder, not data
                yield ListedObject(entry["Key"], entry["ETag"].strip('"'), entry["Size"], entry["LastModified"])
    except client.exceptions.NoSuchBucket:
        raise SourceError(f"bucket {bucket!r} does not exist (endpoint {client.meta.endpoint_url})") from None


def _new_objects(
    items: Dataset, bucket: str, listed: list[ListedObject], watermark: Watermark, source: str
) -> list[ListedObject]:
    """Objects at or after the watermark that the items do not hold with the same ETag, oldest first."""
    candidates = [o for o in listed if watermark.since is None or o.last_modified >= watermark.since]
    ids = [item_id(source, f"{bucket}/{o.key}") for o in candidates]
    held = items.take(ids, columns=["id", "data"]) if ids else None
    etags = {} if held is None else {row["id"]: json.loads(row["data"])["etag"] for row in held.to_pylist()}
    fresh = [o for o, i in zip(candidates, ids, strict=True) if etags.get(i) != o.etag]
    return sorted(fresh, key=lambda o: (o.last_modified, o.key))


def _advance(
    watermark: Watermark,
    batch: list[ListedObject],
    rest: list[ListedObject],
    listed: list[ListedObject],
    overlap: timedelta,
) -> Watermark:
    """The watermark once `batch` is committed: objects before the oldest one still to do are done."""
    horizon = rest[0].last_modified if rest else max(o.last_modified for o in listed)
    since = horizon - overlap
    if watermark.since is not None:
        since = max(since, watermark.since)
    return Watermark(watermark.bucket, watermark.prefix, since=since, last_key=batch[-1].key)


def _item(client: Any, bucket: str, obj: ListedObject, provenance: Provenance) -> dict[str, Any] | None:
    try:
        response = client.get_object(Bucket=bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "NoSuchKey", "412", "404"):
            return None
        raise
    blob: bytes = response["Body"].read()
    mime = content_type(obj.key, blob[:16])
    if mime == "application/octet-stream":
        mime = response.get("ContentType") or mime
    size = image_size(blob[:HEADER_BYTES])
    description = {
        "bucket": bucket,
        "key": obj.key,
        "etag": obj.etag,
        "size": len(blob),
        "last_modified": obj.last_modified.isoformat(),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "content_type": mime,
        "stored_content_type": response.get("ContentType"),
        "version_id": response.get("VersionId"),
        "storage_class": response.get("StorageClass"),
    }
    raw = json.dumps(description, ensure_ascii=False)
    user_metadata = response.get("Metadata") or {}
    source_id = f"{bucket}/{obj.key}"
    return {
        "id": item_id(provenance.source, source_id),
        "source_id": source_id,
        "media_type": media_type(mime),
        "uri": f"s3://{bucket}/{obj.key}",
        "width": size.width if size else None,
        "height": size.height if size else None,
        "data": raw,
        "metadata": json.dumps(user_metadata, ensure_ascii=False, sort_keys=True) if user_metadata else None,
        "updated_at": obj.last_modified,
        "blob": blob,
        **provenance.columns(raw, f"/{escape_token(obj.key)}"),
    }

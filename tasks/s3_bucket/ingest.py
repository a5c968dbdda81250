"""Ingest every new object under an S3 prefix as an item whose blob is the object.

An object is the item `<source>:<bucket>/<key>` (so re-ingesting an object is an upsert), with `uri`
`s3://bucket/key`, the bytes in `blob`, `updated_at` its LastModified, and in `data` its ETag, size,
sha256, content type (sniffed from the bytes, else the extension, else what S3 says) and storage
metadata; user metadata (x-amz-meta-*) is `metadata`; width and height come from image headers. An
object typed as a PNG, JPEG or GIF whose header gives no size is corrupt: it is quarantined with the
reason (a source reject), not stored. The items do not hold it, so a run whose watermark window still
covers it quarantines it again (the same reject row); past the window only a new upload brings it back.

`plan_prefix` lists the prefix and cuts the new objects, oldest first, into batches, each with the
watermark that covers it (see `watermark.py`); `fetch_batch` downloads one batch with a thread pool.
`ingest_prefix` does both and commits each batch through the checks; the ingest flow stages the
fetched batches and commits them with the flow's steps instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
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
from ..media import HEADER_BYTES, content_type, image_size, media_type, pixels
from ..provenance import Provenance
from ..rejects import SourceReject
from ..watermarks import trailing_since
from .client import S3Options
from .watermark import Watermark, latest_watermark, property_name

SOURCE = "s3"
DEFAULT_OVERLAP = timedelta(minutes=10)
_SIZED_TYPES = frozenset({"image/png", "image/jpeg", "image/gif"})  # the headers `image_size` reads


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class ObjectBatch:
    """Objects committed together, the watermark in force once they are, and the commit's idempotency key."""

    objects: tuple[ListedObject, ...]
    watermark: Watermark
    idempotency_key: str

    def properties(self) -> dict[str, str]:
        """The commit properties that record the batch's watermark."""
        return {property_name(self.watermark.bucket, self.watermark.prefix): self.watermark.to_json()}


@dataclass(frozen=True)
class BucketPlan:
    """What a listing of the prefix found: how many objects, and the new ones in batches, oldest first."""

    listed: int
    previous: Watermark  # the watermark the listing started from
    batches: tuple[ObjectBatch, ...]

    @property
    def new(self) -> int:
        return sum(len(batch.objects) for batch in self.batches)

    @property
    def watermark(self) -> Watermark:
        """The watermark once every batch is committed."""
        return self.batches[-1].watermark if self.batches else self.previous


@dataclass(frozen=True)
class FetchedBatch:
    """A downloaded batch: the items to commit, and the objects quarantined with their reason."""

    changes: ChangeSet
    rejects: tuple[SourceReject, ...]


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
    plan = plan_prefix(
        catalog,
        project,
        client,
        bucket,
        prefix,
        batch_size=batch_size,
        overlap=overlap,
        source=source,
        flow_run_id=flow_run_id,
    )
    batches = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for batch in plan.batches:
            fetched = fetch_batch(client, pool, batch, source=source, flow_run_id=flow_run_id)
            batches.append(
                commit_changes(
                    catalog,
                    project,
                    fetched.changes,
                    idempotency_key=batch.idempotency_key,
                    max_failure_rate=max_failure_rate,
                    message=f"{len(batch.objects)} object(s) from s3://{bucket}/{prefix}",
                    properties=batch.properties(),
                    source_rejects=fetched.rejects,
                )
            )
    return BucketIngest(listed=plan.listed, new=plan.new, watermark=plan.watermark, batches=batches)


def plan_prefix(
    catalog: Catalog,
    project: str,
    client: Any,
    bucket: str,
    prefix: str = "",
    *,
    batch_size: int = 1000,
    overlap: timedelta = DEFAULT_OVERLAP,
    source: str = SOURCE,
    flow_run_id: str | None = None,
) -> BucketPlan:
    """List `s3://bucket/prefix` and cut the objects new since the last committed watermark into batches.

    A batch's idempotency key names the flow run (`local` outside one), the watermark the run started
    from and the batch's objects and ETags: a retried run that redoes a batch finds its commit, while a
    later run never mistakes an object overwritten back to an earlier content for one it committed.
    """
    items = ensure_groundtruth(catalog, project).items
    previous = latest_watermark(items, bucket, prefix)
    listed = list(_list(client, bucket, prefix))
    fresh = _new_objects(items, bucket, listed, previous, source)
    watermark = previous
    batches = []
    for start in range(0, len(fresh), batch_size):
        objects = tuple(fresh[start : start + batch_size])
        watermark = _advance(watermark, objects, fresh[start + batch_size : start + batch_size + 1], listed, overlap)
        content = [bucket, prefix, previous.to_json(), [(o.key, o.etag) for o in objects]]
        key = f"{source}:{flow_run_id or 'local'}:{canonical_sha256(content)}"
        batches.append(ObjectBatch(objects, watermark, key))
    return BucketPlan(len(listed), previous, tuple(batches))


def fetch_batch(
    client: Any, pool: Executor, batch: ObjectBatch, *, source: str = SOURCE, flow_run_id: str | None = None
) -> FetchedBatch:
    """Download a batch's objects on `pool`: its items, and the corrupt images as source rejects.

    An object changed or deleted since the listing is left out; the next run lists it anew.
    """
    bucket, prefix = batch.watermark.bucket, batch.watermark.prefix
    provenance = Provenance(source=source, source_ref=f"s3://{bucket}/{prefix}", flow_run_id=flow_run_id)
    fetched = list(pool.map(lambda obj: _fetch(client, bucket, obj, provenance), batch.objects))
    rows = [row for row in fetched if isinstance(row, dict)]
    changes = ChangeSet(
        items=canonical_table("items", rows),
        annotations=canonical_table("annotations", []),
        predictions=canonical_table("predictions", []),
    )
    return FetchedBatch(changes, tuple(row for row in fetched if isinstance(row, SourceReject)))


def _list(client: Any, bucket: str, prefix: str) -> Iterator[ListedObject]:
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith("/") and entry["Size"] == 0:
                    continue  # a "folder" placeholder, not data
                yield ListedObject(entry["Key"], entry["ETag"].strip('"'), entry["Size"], entry["LastModified"])
    except client.exceptions.NoSuchBucket:
        raise SourceError(f"bucket {bucket!r} does not exist (endpoint {client.meta.endpoint_url})") from None
    except client.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise  # throttling, server errors: transient, worth a retry
        raise SourceError(
            f"cannot list s3://{bucket}/{prefix} at {client.meta.endpoint_url}: {code}; check the AWS credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role) and that they may list and read the bucket"
        ) from None


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
    batch: tuple[ListedObject, ...],
    following: list[ListedObject],
    listed: list[ListedObject],
    overlap: timedelta,
) -> Watermark:
    """The watermark once `batch` is committed: objects before the oldest one still to do are done."""
    horizon = following[0].last_modified if following else max(o.last_modified for o in listed)
    since = trailing_since(watermark.since, horizon, overlap)
    return Watermark(watermark.bucket, watermark.prefix, since=since, last_key=batch[-1].key)


def _fetch(client: Any, bucket: str, obj: ListedObject, provenance: Provenance) -> dict[str, Any] | SourceReject | None:
    """The object's item row; a source reject if it is a corrupt image; None if it changed since the listing."""
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
    width, height = (pixels(size.width), pixels(size.height)) if size else (None, None)
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
    pointer = f"/{escape_token(obj.key)}"
    if mime in _SIZED_TYPES and (width is None or height is None):
        return SourceReject(
            source_ref=provenance.source_ref,
            source_pointer=pointer,
            reason=(
                f"s3://{bucket}/{obj.key} is typed {mime} but its header gives no usable width and height "
                f"(first bytes {blob[:16].hex()}): the image is corrupt or truncated; re-upload it (a changed "
                "object is ingested again) or delete it"
            ),
            text=json.dumps({**description, "head_hex": blob[:64].hex()}, ensure_ascii=False),
        )
    raw = json.dumps(description, ensure_ascii=False)
    user_metadata = response.get("Metadata") or {}
    source_id = f"{bucket}/{obj.key}"
    return {
        "id": item_id(provenance.source, source_id),
        "source_id": source_id,
        "media_type": media_type(mime),
        "uri": f"s3://{bucket}/{obj.key}",
        "width": width,
        "height": height,
        "data": raw,
        "metadata": json.dumps(user_metadata, ensure_ascii=False, sort_keys=True) if user_metadata else None,
        "updated_at": obj.last_modified,
        "blob": blob,
        **provenance.columns(raw, pointer),
    }

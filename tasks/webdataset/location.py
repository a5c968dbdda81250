"""Where shards live: local paths, or `s3://bucket/key` objects read with the S3 bucket source's client options.

A pattern's braces expand in the key as in a path (`s3://data/train-{000..009}.tar`). Every shard is
checked to exist before any is parsed, so a wrong pattern fails at once with the missing names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import SourceError
from ..s3_bucket.client import S3Options, split_url
from .patterns import expand_pattern

S3_SCHEME = "s3://"


def shard_urls(pattern: str | os.PathLike[str] | Sequence[str], s3: S3Options | None = None) -> list[str]:
    """The shards a pattern (or a list of paths and URLs) names: absolute local paths and S3 URLs, in
    order; SourceError naming the missing ones if any does not exist."""
    if isinstance(pattern, os.PathLike):
        pattern = os.fspath(pattern)
    names = expand_pattern(pattern) if isinstance(pattern, str) else [os.fspath(name) for name in pattern]
    urls = [name if name.startswith(S3_SCHEME) else str(Path(name).resolve()) for name in names]
    remote = [url for url in urls if url.startswith(S3_SCHEME)]
    found = set(_existing_objects(remote, s3)) if remote else set()
    missing = [url for url in urls if (url not in found if url.startswith(S3_SCHEME) else not Path(url).is_file())]
    if missing:
        raise SourceError(f"{len(missing)} shard(s) not found, e.g. {missing[:3]}; check the pattern and directory")
    return urls


def read_shard(url: str, s3: S3Options | None = None) -> bytes:
    """The bytes of one shard (a local path or an S3 URL)."""
    if not url.startswith(S3_SCHEME):
        return Path(url).read_bytes()
    bucket, key = split_s3_url(url)
    client = (s3 or S3Options()).client()
    try:
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        raise SourceError(f"shard {url} is gone (it existed when the ingest started); write it again") from None
    return body


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; SourceError if either is missing."""
    bucket, key = split_url(url)
    if not key:
        raise SourceError(f"{url!r} names no object; write s3://bucket/path/to/shard.tar")
    return bucket, key


def _existing_objects(urls: list[str], s3: S3Options | None) -> list[str]:
    client = (s3 or S3Options()).client()

    def exists(url: str) -> str | None:
        bucket, key = split_s3_url(url)
        try:
            client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise SourceError(f"cannot read {url}: {exc}; check the endpoint, bucket and credentials") from exc
        return url

    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        return [url for url in pool.map(exists, urls) if url is not None]

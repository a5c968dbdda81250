"""S3 object store: commit entries by conditional put (`If-None-Match: *`), reads through pyarrow's S3 filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from ..errors import InvalidInputError, StoreAccessError
from .base import FileInfo, ObjectStore
from .paths import check_relative, join


@contextmanager
def _translated(uri: str, passthrough: tuple[str, ...] = ()) -> Iterator[None]:
    """Turn botocore failures into StoreAccessError, except error codes the caller handles itself."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in passthrough:
            raise
        raise StoreAccessError(
            f"{uri}: S3 request failed ({code}: {exc}); check the bucket, credentials and endpoint_url"
        ) from exc
    except BotoCoreError as exc:
        raise StoreAccessError(
            f"{uri}: cannot reach S3 ({exc}); check credentials, endpoint_url and the network"
        ) from exc


class S3Store:
    """An ObjectStore under `s3://bucket/prefix`."""

    def __init__(
        self, bucket: str, prefix: str, client: Any, arrow: pafs.S3FileSystem, options: dict[str, Any]
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client
        self._arrow = arrow
        self._options = options

    @staticmethod
    def from_uri(uri: str, **options: Any) -> S3Store:
        """Open `s3://bucket/prefix`; options: endpoint_url, region, access_key, secret_key, session_token."""
        import boto3  # optional dependency: only S3 catalogs need it

        parsed = urlparse(uri)
        if not parsed.netloc:
            raise InvalidInputError(f"S3 URI {uri!r} has no bucket; use s3://bucket/prefix")
        known = {"endpoint_url", "region", "access_key", "secret_key", "session_token"}
        unknown = set(options) - known
        if unknown:
            raise InvalidInputError(f"unknown S3 option(s) {sorted(unknown)}; known: {sorted(known)}")
        client = boto3.client(
            "s3",
            endpoint_url=options.get("endpoint_url"),
            region_name=options.get("region"),
            aws_access_key_id=options.get("access_key"),
            aws_secret_access_key=options.get("secret_key"),
            aws_session_token=options.get("session_token"),
        )
        endpoint = options.get("endpoint_url")
        arrow = pafs.S3FileSystem(
            access_key=options.get("access_key"),
            secret_key=options.get("secret_key"),
            session_token=options.get("session_token"),
            region=options.get("region") or "us-east-1",
            endpoint_override=endpoint,
            scheme=urlparse(endpoint).scheme if endpoint else "https",
        )
        return S3Store(parsed.netloc, parsed.path, client, arrow, options)

    @property
    def uri(self) -> str:
        return f"s3://{join(self._bucket, self._prefix)}"

    def __reduce__(self) -> tuple[Any, ...]:
        # boto3 clients do not pickle: a copy sent to another process (a DataLoader worker, a Ray task)
        # opens its own from the same URI and options.
        return (_reopen, (self.uri, self._options))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Store) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(("s3", self.uri))

    def _key(self, path: str) -> str:
        return join(self._prefix, check_relative(path))

    def child(self, prefix: str) -> ObjectStore:
        return S3Store(self._bucket, self._key(prefix), self._client, self._arrow, self._options)

    def read_bytes(self, path: str) -> bytes:
        try:
            with _translated(self.uri, passthrough=("NoSuchKey",)):
                body: bytes = self._client.get_object(Bucket=self._bucket, Key=self._key(path))["Body"].read()
        except self._client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"{self.uri}/{path}") from exc
        return body

    def write_bytes(self, path: str, data: bytes) -> None:
        with _translated(self.uri):
            self._client.put_object(Bucket=self._bucket, Key=self._key(path), Body=data)

    def put_file(self, path: str, local_file: str) -> int:
        with _translated(self.uri):
            self._client.upload_file(local_file, self._bucket, self._key(path))
        return os.path.getsize(local_file)

    def local_path(self, path: str) -> str | None:
        return None

    def put_if_absent(self, path: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError  # optional dependency

        try:
            with _translated(self.uri, passthrough=("PreconditionFailed", "ConditionalRequestConflict", "412", "409")):
                self._client.put_object(Bucket=self._bucket, Key=self._key(path), Body=data, IfNoneMatch="*")
        except ClientError:
            return False
        return True

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
        except FileNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        from botocore.exceptions import ClientError  # optional dependency

        try:
            with _translated(self.uri, passthrough=("404", "NoSuchKey", "NotFound")):
                head = self._client.head_object(Bucket=self._bucket, Key=self._key(path))
        except ClientError as exc:
            raise FileNotFoundError(f"{self.uri}/{path}") from exc
        return int(head["ContentLength"])

    def list_files(self, prefix: str = "") -> list[FileInfo]:
        base = self._key(prefix) if prefix else self._prefix
        start = f"{base}/" if base else ""
        out: list[FileInfo] = []
        with _translated(self.uri):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(self._prefix) + 1 :] if self._prefix else obj["Key"]
                    out.append(FileInfo(rel, int(obj["Size"]), obj["LastModified"].timestamp()))
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        base = self._key(prefix) if prefix else self._prefix
        start = f"{base}/" if base else ""
        names: list[str] = []
        with _translated(self.uri):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                names += [p["Prefix"][len(start) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    def delete(self, path: str) -> None:
        with _translated(self.uri):
            self._client.delete_object(Bucket=self._bucket, Key=self._key(path))

    def arrow_fs(self) -> tuple[pafs.FileSystem, str]:
        return self._arrow, join(self._bucket, self._prefix)


def _reopen(uri: str, options: dict[str, Any]) -> S3Store:
    """Unpickle an S3Store."""
    return S3Store.from_uri(uri, **options)

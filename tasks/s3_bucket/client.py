"""How to reach a bucket: `s3://bucket/prefix` URLs and boto3 client options (endpoint, region, credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SourceError


@dataclass(frozen=True)
class S3Options:
    """boto3 client options; unset ones fall back to boto3's usual chain (environment, profile, role).

    `endpoint_url` points at an S3-compatible store (MinIO, moto, Ceph); `max_pool_connections` should
    be at least the number of parallel downloads.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    max_pool_connections: int = 32
    retries: int = 5

    def client(self) -> Any:
        """A boto3 S3 client with these options (thread-safe: share it between downloads)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise SourceError("the S3 source needs boto3: pip install 'labelhouse[s3]' (or boto3)") from None
        session = boto3.session.Session(profile_name=self.profile) if self.profile else boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
            config=Config(
                max_pool_connections=self.max_pool_connections,
                retries={"max_attempts": self.retries, "mode": "standard"},
            ),
        )


def split_url(url: str) -> tuple[str, str]:
    """The bucket and prefix of `s3://bucket/prefix` (the prefix may be empty)."""
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise SourceError(f"{url!r} is not an S3 URL: write s3://bucket or s3://bucket/prefix")
    return bucket, prefix

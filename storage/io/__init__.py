"""Object stores the engine reads and writes through."""

from __future__ import annotations

from typing import Any

from .base import FileInfo, ObjectStore
from .local import LocalStore


def open_store(uri: str, **options: Any) -> ObjectStore:
    """Open a store for a local path or an `s3://bucket/prefix` URI."""
    if uri.startswith("s3://"):
        from .s3 import S3Store

        return S3Store.from_uri(uri, **options)
    if options:
        raise TypeError(f"options {sorted(options)} only apply to s3:// catalogs")
    return LocalStore(uri)


__all__ = ["FileInfo", "LocalStore", "ObjectStore", "open_store"]

"""Object stores the engine reads and writes through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import FileInfo, ObjectStore
from .local import LocalStore

StoreWrapper = Callable[[ObjectStore], ObjectStore]
"""Wraps a catalog's root store (tracing, fault injection in tests); see `Catalog(uri, wrap_store=...)`."""


def put_once(store: ObjectStore, path: str, data: bytes) -> bool:
    """put_if_absent with its ambiguous outcomes resolved: True when this call's `data` is what got stored.

    A put that raised (its response was lost) or answered "exists" (the SDK retried a put that had landed
    and met its own object) may have created the object all the same. Callers put unique bytes (ids,
    tokens, timestamps), so reading the object back tells whose it is.
    """
    try:
        if store.put_if_absent(path, data):
            return True
    except Exception:
        if not _holds(store, path, data):
            raise
        return True
    return _holds(store, path, data)


def _holds(store: ObjectStore, path: str, data: bytes) -> bool:
    try:
        return store.read_bytes(path) == data
    except FileNotFoundError:
        return False


def open_store(uri: str, **options: Any) -> ObjectStore:
    """Open a store for a local path or an `s3://bucket/prefix` URI."""
    if uri.startswith("s3://"):
        from .s3 import S3Store

        return S3Store.from_uri(uri, **options)
    if options:
        raise TypeError(f"options {sorted(options)} only apply to s3:// catalogs")
    return LocalStore(uri)


__all__ = ["FileInfo", "LocalStore", "ObjectStore", "StoreWrapper", "open_store", "put_once"]

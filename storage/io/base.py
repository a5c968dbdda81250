"""The object-store interface the engine writes through: local disk and S3 implement it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow.fs as pafs


@dataclass(frozen=True)
class FileInfo:
    """One stored object: its path relative to the store root, size and modification time (epoch s)."""

    path: str
    size: int
    mtime: float


class ObjectStore(Protocol):
    """A flat namespace of immutable objects addressed by relative posix paths.

    Every path is relative to the store's root; implementations refuse paths that would escape it.
    """

    @property
    def uri(self) -> str:
        """Where the store lives, for messages (a local path or an s3:// URI)."""
        ...

    def __hash__(self) -> int:
        """Stores are hashable by location, so per-file caches can key on them."""
        ...

    def child(self, prefix: str) -> ObjectStore:
        """A store rooted at `prefix` inside this one."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """The whole object; FileNotFoundError if absent."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Durably store a new object under a unique name (never used for commit entries)."""
        ...

    def put_file(self, path: str, local_file: str) -> int:
        """Durably store a local file (which the call may move away) under a unique name; returns its size.

        A file written at `io.local.staging_path(store, path)` is moved into place where the store allows it."""
        ...

    def local_path(self, path: str) -> str | None:
        """A local filesystem path of the object when the store is local, else None."""
        ...

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Atomically create `path` with `data` unless it exists; True if this call created it."""
        ...

    def exists(self, path: str) -> bool:
        """Whether the object exists."""
        ...

    def size(self, path: str) -> int:
        """Size in bytes; FileNotFoundError if absent."""
        ...

    def list_files(self, prefix: str = "") -> list[FileInfo]:
        """Every object under the directory `prefix` (recursive), paths relative to this store."""
        ...

    def list_dirs(self, prefix: str = "") -> list[str]:
        """Names of the immediate sub-directories of `prefix` (non-recursive)."""
        ...

    def delete(self, path: str) -> None:
        """Remove an object; absent objects are ignored."""
        ...

    def arrow_fs(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the root path in it, for columnar readers."""
        ...

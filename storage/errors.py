"""The storage error tree. Every message says what was wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StorageError(Exception):
    """Root of every error raised by the storage engine."""


class InvalidNameError(StorageError, ValueError):
    """A dataset, tag or branch name is not allowed (path separators, `..`, NUL, too long)."""


class DatasetNotFoundError(StorageError, KeyError):
    """No dataset of that name exists in the catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetExistsError(StorageError):
    """A dataset of that name already exists."""


class SchemaMismatchError(StorageError, ValueError):
    """Input data does not match the dataset's schema, or a schema is invalid."""


class InvalidInputError(StorageError, ValueError):
    """Input data is malformed: null or duplicate primary keys, unsupported type, bad argument."""


def _preview(keys: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{shown}{more}"


class PrimaryKeyConflictError(StorageError):
    """An insert names primary keys that already exist; nothing was written."""

    def __init__(self, dataset: str, keys: Sequence[Any]) -> None:
        self.dataset = dataset
        self.keys = list(keys)
        super().__init__(
            f"dataset {dataset!r}: {len(self.keys)} primary key(s) already exist: {_preview(self.keys)}; "
            "nothing was written. Use upsert() to replace existing rows, or drop these keys from the input."
        )


class CommitConflictError(StorageError):
    """A concurrent commit touched the same keys or files; this commit was not applied."""


class MergeConflictError(StorageError):
    """Both branches changed the same primary keys differently since their common ancestor."""

    def __init__(self, source: str, target: str, keys: Sequence[Any]) -> None:
        self.keys = list(keys)
        super().__init__(
            f"merge of branch {source!r} into {target!r}: {len(self.keys)} key(s) changed differently on both "
            f"sides: {_preview(self.keys)}. Resolve them on one branch, or pass strategy='ours' or 'theirs'."
        )


class VersionNotFoundError(StorageError, LookupError):
    """A snapshot id, tag, branch or datetime does not name a version of the dataset."""


class TagExistsError(StorageError):
    """A tag of that name already names another snapshot (tags are immutable without force=True)."""


class BranchExistsError(StorageError):
    """A branch of that name already exists."""


class StoreAccessError(StorageError):
    """The object store refused or failed a request (credentials, endpoint, network, permissions)."""


class CorruptDatasetError(StorageError):
    """A metadata or data file is unreadable, missing, or of an unknown format version."""

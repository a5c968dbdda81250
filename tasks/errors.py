"""Errors about what sources hand us and about batches refused by the quality gate.

They extend the storage error tree so a caller can catch every Labelhouse error with `StorageError`.
Messages name the input (file, JSON pointer, task id) and say what to fix.
"""

from __future__ import annotations

from storage.errors import StorageError


class SourceError(StorageError):
    """Input from a source (export file, API response, webhook payload) cannot be used as is."""


class SourceFormatError(SourceError, ValueError):
    """The input is not in the expected format: not an export of that tool, or a field of the wrong type."""


class UnrecognizedSourceError(SourceFormatError):
    """The input is valid JSON but not what the connector reads (e.g. not a Label Studio export at all)."""


class TruncatedSourceError(SourceFormatError):
    """The input ends in the middle of a JSON value: the file was cut short (partial download or copy)."""


class LabelingConfigError(SourceError, ValueError):
    """A labeling configuration (Label Studio XML) does not parse or lacks what is needed."""


class BatchRejectedError(StorageError):
    """Too many rows of a batch failed the checks; nothing of the batch was written."""

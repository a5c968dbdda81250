"""The public description of a snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .log import LogEntry


@dataclass(frozen=True)
class Snapshot:
    """An immutable version of a dataset, returned by every write."""

    id: int
    parent_id: int | None
    branch: str
    created_at: datetime
    operation: str
    summary: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @staticmethod
    def of(entry: LogEntry) -> Snapshot:
        """From a log entry."""
        return Snapshot(
            id=entry.snapshot_id,
            parent_id=entry.parent_id,
            branch=entry.branch,
            created_at=entry.created_at,
            operation=entry.operation,
            summary=dict(entry.summary),
            message=entry.message,
            properties=dict(entry.properties),
            idempotency_key=entry.idempotency_key,
        )

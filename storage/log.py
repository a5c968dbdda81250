"""The commit log: one JSON entry per snapshot, created by put-if-absent so a commit is one atomic step.

Snapshot ids are dense and global to a dataset (one chain for all branches). Entries are immutable, so a
process caches every entry it has read and only probes for newer ones.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import CorruptDatasetError, VersionNotFoundError
from .formats import FORMAT_VERSION, LOG_DIR, check_format_version, decode_json, encode_json, log_name
from .io import ObjectStore, put_once

BRANCH_CREATE = "create_branch"
BRANCH_DELETE = "delete_branch"


@dataclass(frozen=True)
class LogEntry:
    """One commit: which branch it moved, from which parent, and the files describing the result."""

    snapshot_id: int
    parent_id: int | None
    branch: str
    created_at: datetime
    operation: str
    commit_id: str
    manifest: str | None = None
    changes: str | None = None
    message: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Serialize for storage."""
        return encode_json(
            {
                "format_version": FORMAT_VERSION,
                "snapshot_id": self.snapshot_id,
                "parent_id": self.parent_id,
                "branch": self.branch,
                "created_at": self.created_at.isoformat(),
                "operation": self.operation,
                "commit_id": self.commit_id,
                "manifest": self.manifest,
                "changes": self.changes,
                "message": self.message,
                "properties": self.properties,
                "idempotency_key": self.idempotency_key,
                "summary": self.summary,
            }
        )

    @staticmethod
    def from_json(data: bytes, where: str) -> LogEntry:
        """Parse a stored entry, with CorruptDatasetError naming the file on any defect."""
        obj = decode_json(data, where)
        if not isinstance(obj, dict):
            raise CorruptDatasetError(f"{where}: a log entry must be a JSON object")
        check_format_version(obj, where)
        try:
            return LogEntry(
                snapshot_id=int(obj["snapshot_id"]),
                parent_id=None if obj["parent_id"] is None else int(obj["parent_id"]),
                branch=str(obj["branch"]),
                created_at=datetime.fromisoformat(obj["created_at"]),
                operation=str(obj["operation"]),
                commit_id=str(obj["commit_id"]),
                manifest=obj.get("manifest"),
                changes=obj.get("changes"),
                message=obj.get("message"),
                properties=dict(obj.get("properties") or {}),
                idempotency_key=obj.get("idempotency_key"),
                summary=dict(obj.get("summary") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDatasetError(f"{where}: log entry is missing or has a malformed field ({exc})") from exc

    @property
    def is_branch_delete(self) -> bool:
        """True for the entry that deleted its branch (it has no content)."""
        return self.operation == BRANCH_DELETE


class Log:
    """Cached view of a dataset's commit log."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._entries: dict[int, LogEntry] = {}
        self._missing: set[int] = set()  # ids below the head whose entry was expired
        self._head = -1
        self._listed = False

    def load(self, snapshot_id: int) -> LogEntry | None:
        """Parse a snapshot's entry from the store, bypassing the cache (None if it is gone)."""
        return self._load(snapshot_id)

    def _load(self, snapshot_id: int) -> LogEntry | None:
        path = log_name(snapshot_id)
        try:
            data = self._store.read_bytes(path)
        except FileNotFoundError:
            return None
        entry = LogEntry.from_json(data, f"{self._store.uri}/{path}")
        if entry.snapshot_id != snapshot_id:
            raise CorruptDatasetError(
                f"{self._store.uri}/{path}: entry claims snapshot {entry.snapshot_id}; the log was edited by hand"
            )
        return entry

    def refresh(self) -> int:
        """Read entries committed since the last call; returns the newest snapshot id (-1 if none)."""
        with self._lock:
            if not self._listed:
                self._initial_listing()
            while True:
                entry = self._load(self._head + 1)
                if entry is None:
                    return self._head
                self._entries[entry.snapshot_id] = entry
                self._head = entry.snapshot_id

    def _initial_listing(self) -> None:
        ids = sorted(
            int(info.path.rsplit("/", 1)[-1].split(".")[0])
            for info in self._store.list_files(LOG_DIR)
            if info.path.endswith(".json") and info.path.rsplit("/", 1)[-1].split(".")[0].isdigit()
        )
        with ThreadPoolExecutor(max_workers=16) as pool:
            loaded = list(pool.map(self._load, ids))
        for sid, entry in zip(ids, loaded, strict=True):
            if entry is None:
                self._missing.add(sid)
            else:
                self._entries[sid] = entry
        self._head = ids[-1] if ids else -1
        self._missing.update(set(range(self._head + 1)) - set(self._entries))
        self._listed = True

    @property
    def head(self) -> int:
        """The newest snapshot id seen by the last refresh."""
        return self._head

    def get(self, snapshot_id: int) -> LogEntry:
        """The entry of a snapshot id; VersionNotFoundError if it never existed or was expired."""
        entry = self._entries.get(snapshot_id)
        if entry is None and 0 <= snapshot_id <= self._head and snapshot_id not in self._missing:
            entry = self._load(snapshot_id)
        if entry is None:
            state = "was expired" if snapshot_id in self._missing else "does not exist"
            raise VersionNotFoundError(
                f"snapshot {snapshot_id} {state} (newest is {self._head}); list versions with ds.versions()"
            )
        return entry

    def entries(self) -> list[LogEntry]:
        """Every live entry in id order."""
        return [self._entries[i] for i in sorted(self._entries)]

    def branch_head(self, branch: str) -> LogEntry | None:
        """The newest entry of `branch`, or None if the branch does not exist (or was deleted)."""
        for sid in range(self._head, -1, -1):
            entry = self._entries.get(sid)
            if entry is not None and entry.branch == branch:
                return None if entry.is_branch_delete else entry
        return None

    def branches(self) -> dict[str, LogEntry]:
        """Every live branch with its head entry."""
        heads: dict[str, LogEntry] = {}
        seen: set[str] = set()
        for sid in range(self._head, -1, -1):
            entry = self._entries.get(sid)
            if entry is None or entry.branch in seen:
                continue
            seen.add(entry.branch)
            if not entry.is_branch_delete:
                heads[entry.branch] = entry
        return heads

    def find(self, *, idempotency_key: str | None = None, commit_id: str | None = None) -> LogEntry | None:
        """The entry that carries an idempotency key or a commit id, if any."""
        for entry in self._entries.values():
            if idempotency_key is not None and entry.idempotency_key == idempotency_key:
                return entry
            if commit_id is not None and entry.commit_id == commit_id:
                return entry
        return None

    def chain(self, entry: LogEntry) -> list[LogEntry]:
        """`entry` and its ancestors through parent links, newest first, stopping at an expired one."""
        out = [entry]
        while out[-1].parent_id is not None:
            parent = self._entries.get(out[-1].parent_id)
            if parent is None:
                break
            out.append(parent)
        return out

    def try_append(self, entry: LogEntry) -> bool:
        """Create the entry's log file if no other writer took that id first.

        A put whose outcome looked like a failure but did store this entry counts as done (put_once).
        """
        created = put_once(self._store, log_name(entry.snapshot_id), entry.to_json())
        if created:
            with self._lock:
                self._entries[entry.snapshot_id] = entry
                self._head = max(self._head, entry.snapshot_id)
        return created

    def forget(self, snapshot_ids: set[int]) -> None:
        """Drop expired entries from the cache."""
        with self._lock:
            for sid in snapshot_ids:
                self._entries.pop(sid, None)
                self._missing.add(sid)

"""A refresh lease: put-if-absent of a lock object, so one refresh of a view runs at a time."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from types import TracebackType

from ..errors import StorageError
from ..io import ObjectStore

LOCK_FILE = "_refresh.lock"


class RefreshInProgressError(StorageError):
    """Another process is refreshing this view right now."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RefreshLease:
    """Held while a refresh runs; a crashed holder's lease is taken over once it expires or its process died."""

    def __init__(self, store: ObjectStore, name: str, ttl_seconds: float = 3600.0) -> None:
        self._store = store
        self._name = name
        self._ttl = ttl_seconds
        self._token = uuid.uuid4().hex

    def _body(self) -> bytes:
        return json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "token": self._token, "expires": time.time() + self._ttl}
        ).encode()

    def _stale(self) -> bool:
        try:
            held = json.loads(self._store.read_bytes(LOCK_FILE))
        except (FileNotFoundError, ValueError):
            return True
        if float(held.get("expires", 0)) < time.time():
            return True
        return bool(held.get("host") == socket.gethostname() and not _alive(int(held.get("pid", 0))))

    def __enter__(self) -> RefreshLease:
        if self._store.put_if_absent(LOCK_FILE, self._body()):
            return self
        if self._stale():
            self._store.delete(LOCK_FILE)
            if self._store.put_if_absent(LOCK_FILE, self._body()):
                return self
        raise RefreshInProgressError(
            f"view {self._name!r} is being refreshed by another process ({self._store.uri}/{LOCK_FILE}); "
            "wait for it to finish (a crashed refresh's lease is taken over when its process is gone)"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            held = json.loads(self._store.read_bytes(LOCK_FILE))
        except (FileNotFoundError, ValueError):
            return
        if held.get("token") == self._token:
            self._store.delete(LOCK_FILE)

"""A refresh lease: put-if-absent of a lock object, so one refresh of a view runs at a time."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from types import TracebackType

from ..errors import StorageError
from ..io import ObjectStore, put_once

LOCK_FILE = "_refresh.lock"

# Tokens of the leases this process holds right now. A lock naming this process but none of these tokens
# was left by a release that failed (a lost delete response): it is stale, not "another refresh".
_HELD: set[str] = set()


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
        if held.get("host") != socket.gethostname():
            return False
        pid = int(held.get("pid", 0))
        return not _alive(pid) or (pid == os.getpid() and held.get("token") not in _HELD)

    def _acquire(self) -> bool:
        # put_once: a lock put whose response was lost is still ours (else only the TTL would free it).
        if put_once(self._store, LOCK_FILE, self._body()):
            _HELD.add(self._token)
            return True
        return False

    def __enter__(self) -> RefreshLease:
        if self._acquire():
            return self
        if self._stale():
            self._store.delete(LOCK_FILE)
            if self._acquire():
                return self
        raise RefreshInProgressError(
            f"view {self._name!r} is being refreshed by another process ({self._store.uri}/{LOCK_FILE}); "
            "wait for it to finish (a crashed refresh's lease is taken over when its process is gone)"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _HELD.discard(self._token)  # from here on, a lock left behind by this lease counts as stale
        try:
            held = json.loads(self._store.read_bytes(LOCK_FILE))
        except (FileNotFoundError, ValueError):
            return
        if held.get("token") == self._token:
            self._store.delete(LOCK_FILE)

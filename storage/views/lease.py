"""A refresh lease: put-if-absent of a lock object, so one refresh of a view runs at a time.

The holder renews the lease from a heartbeat thread while it works, so a long refresh keeps it with a short
TTL, and a refresher that died (or hangs without its heartbeat) loses it once the TTL passes. One heartbeat
thread per process serves every lease it holds: starting a thread per refresh would cost a small refresh
more than its reads.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from types import TracebackType

from ..errors import StorageError
from ..io import ObjectStore, put_once

LOCK_FILE = "_refresh.lock"

# Tokens of the leases this process holds right now. A lock naming this process but none of these tokens
# was left by a release that failed (a lost delete response): it is stale, not "another refresh".
_HELD: set[str] = set()


DEFAULT_TTL_SECONDS = 120.0


class RefreshInProgressError(StorageError):
    """Another process is refreshing this view right now."""


class LeaseLostError(StorageError):
    """The lease expired and another process took it over before this refresh could commit."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeat:
    """The process's heartbeat thread: renews each registered lease a quarter of its TTL after the last time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[RefreshLease, float] = {}
        self._thread: threading.Thread | None = None

    def add(self, lease: RefreshLease) -> None:
        with self._cond:
            self._due[lease] = time.monotonic() + lease.interval
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, lease: RefreshLease) -> None:
        with self._cond:
            self._due.pop(lease, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [lease for lease, at in self._due.items() if at <= now]
                if not due:
                    self._cond.wait(min(self._due.values(), default=now + 3600.0) - now)
                    continue
                for lease in due:
                    self._due[lease] = now + lease.interval
            for lease in due:
                if not lease.beat():
                    self.remove(lease)


_HEARTBEAT = _Heartbeat()


def _after_fork() -> None:
    # A forked child has no heartbeat thread (and the parent's may have held the lock): start afresh.
    global _HEARTBEAT
    _HEARTBEAT = _Heartbeat()


os.register_at_fork(after_in_child=_after_fork)


class RefreshLease:
    """Held while a refresh runs; a crashed holder's lease is taken over once it expires or its process died."""

    def __init__(self, store: ObjectStore, name: str, ttl_seconds: float | None = None) -> None:
        self._store = store
        self._name = name
        self._ttl = DEFAULT_TTL_SECONDS if ttl_seconds is None else ttl_seconds
        self._token = uuid.uuid4().hex
        self._lost: str | None = None
        # Held while renewing: a release waits for a renewal under way, so none rewrites the lock after it.
        self._renewing = threading.Lock()
        self._released = False

    @property
    def interval(self) -> float:
        """Seconds between renewals."""
        return self._ttl / 4

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
        if self._acquire() or (self._stale() and self._take_over()):
            _HEARTBEAT.add(self)
            return self
        raise RefreshInProgressError(
            f"view {self._name!r} is being refreshed by another process ({self._store.uri}/{LOCK_FILE}); "
            "wait for it to finish (a crashed refresh's lease is taken over when its process is gone)"
        )

    def _take_over(self) -> bool:
        self._store.delete(LOCK_FILE)
        return self._acquire()

    def renew(self) -> None:
        """Push the expiry a TTL ahead, if the lock is still this lease's (else remember it was lost)."""
        try:
            held = json.loads(self._store.read_bytes(LOCK_FILE))
        except (FileNotFoundError, ValueError):
            held = {}
        if held.get("token") != self._token:
            self._lost = f"its lock {self._store.uri}/{LOCK_FILE} now belongs to {held or 'nobody'}"
            return
        self._store.write_bytes(LOCK_FILE, self._body())

    def beat(self) -> bool:
        """Renew from the heartbeat; False once there is nothing more to renew (released or lost)."""
        with self._renewing:
            if self._released or self._lost is not None:
                return False
            try:
                self.renew()
            except Exception:  # retried at the next beat: only the expiry takes the lease away
                return True
            return self._lost is None

    def check(self) -> None:
        """Raise LeaseLostError if another process took the lease over (call right before committing)."""
        if self._lost is not None:
            raise LeaseLostError(
                f"refresh of {self._name!r} lost its lease ({self._lost}); its work was not committed, refresh again"
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._renewing:
            self._released = True
        _HEARTBEAT.remove(self)
        _HELD.discard(self._token)  # from here on, a lock left behind by this lease counts as stale
        try:
            held = json.loads(self._store.read_bytes(LOCK_FILE))
        except (FileNotFoundError, ValueError):
            return
        if held.get("token") == self._token:
            self._store.delete(LOCK_FILE)

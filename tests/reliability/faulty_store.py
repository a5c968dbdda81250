"""A fault-injecting ObjectStore wrapper: wraps any store and misbehaves on the calls its rules select.

Inject it with `Catalog(uri, wrap_store=plan.wrap)`; children (datasets, views, indexes) are wrapped too,
and they share the plan, so a rule can select "the 3rd put_if_absent under `ds/_log/`" anywhere in the
catalog. While the plan is recording it also logs every call, which is how the reliability suite
enumerates the steps of an operation on a dry run before injecting a fault at each of them.

Faults model what object stores and disks really do:

- ERROR: the request fails before it reaches the store (connection refused, EIO, 5xx).
- LOST_RESPONSE: the request takes effect, then the caller sees an error (timeout after the put landed).
- PRECONDITION_AFTER_RETRY: a conditional put lands, the SDK's automatic retry of it then gets
  `412 Precondition Failed`, so the caller is told "somebody else created it" although it was itself.
- LATENCY: the request is slow; with `action` set, something else (another writer) happens meanwhile.
- TRUNCATED_READ: a read returns only the first half of the object (a cut connection read as EOF).
- STALE_LIST: a listing misses the objects written through this plan since it was armed.

Reads of Parquet data files go through `arrow_fs()` (a pyarrow filesystem) and are not wrapped; the
`arrow_fs` call itself is recorded and may fail with ERROR.
"""

from __future__ import annotations

import errno
import fnmatch
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast

import pyarrow.fs as pafs

from storage.errors import StoreAccessError
from storage.io import FileInfo, ObjectStore

T = TypeVar("T")


class Op(StrEnum):
    """The ObjectStore calls the wrapper sees (`child`, `uri` and `local_path` do no I/O and are not ops)."""

    READ_BYTES = "read_bytes"
    WRITE_BYTES = "write_bytes"
    PUT_FILE = "put_file"
    PUT_IF_ABSENT = "put_if_absent"
    EXISTS = "exists"
    SIZE = "size"
    LIST_FILES = "list_files"
    LIST_DIRS = "list_dirs"
    DELETE = "delete"
    ARROW_FS = "arrow_fs"


MUTATING = frozenset({Op.WRITE_BYTES, Op.PUT_FILE, Op.PUT_IF_ABSENT, Op.DELETE})


class Fault(StrEnum):
    """What a rule does to the call it selects (see the module docstring)."""

    ERROR = "error"
    LOST_RESPONSE = "lost_response"
    PRECONDITION_AFTER_RETRY = "precondition_after_retry"
    LATENCY = "latency"
    TRUNCATED_READ = "truncated_read"
    STALE_LIST = "stale_list"


# Which calls each fault can meaningfully hit; a rule for any other call is refused when it is built.
APPLIES_TO: dict[Fault, frozenset[Op]] = {
    Fault.ERROR: frozenset(Op),
    Fault.LOST_RESPONSE: MUTATING,
    Fault.PRECONDITION_AFTER_RETRY: frozenset({Op.PUT_IF_ABSENT}),
    Fault.LATENCY: frozenset(Op),
    Fault.TRUNCATED_READ: frozenset({Op.READ_BYTES}),
    Fault.STALE_LIST: frozenset({Op.LIST_FILES}),
}


class InjectedFault(OSError):
    """The error an injected ERROR or LOST_RESPONSE raises on a local store (an I/O error, like EIO)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)


class InjectedStoreError(StoreAccessError):
    """The error an injected fault raises on an S3 store (what S3Store raises for a failed request)."""


ErrorFactory = Callable[[str], Exception]


def local_error(message: str) -> Exception:
    """Errors as a local disk raises them."""
    return InjectedFault(message)


def s3_error(message: str) -> Exception:
    """Errors as S3Store raises them."""
    return InjectedStoreError(message)


@dataclass
class Rule:
    """Select calls by operation, path pattern and occurrence, and apply `fault` to them.

    `path` is an fnmatch pattern over the path relative to the catalog root (e.g. `ds/_log/*`); `nth` is
    the 0-based index among the calls this rule matches (None: every match); `times` bounds how often
    the rule fires. `action` runs before a LATENCY call proceeds (e.g. another writer commits).
    `outage` makes the next that many calls (any operation) fail with ERROR once the rule has fired: a
    lost response followed by an outage is an ambiguous outcome whose resolution fails too.
    """

    fault: Fault
    op: Op | None = None
    path: str | None = None
    nth: int | None = None
    times: int = 1
    delay: float = 0.0
    action: Callable[[], None] | None = None
    outage: int = 0
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.op is not None and self.op not in APPLIES_TO[self.fault]:
            raise ValueError(f"fault {self.fault} does not apply to {self.op}")

    def _selects(self, op: Op, path: str) -> bool:
        if self.fired >= self.times or op not in APPLIES_TO[self.fault]:
            return False
        if (self.op is not None and op != self.op) or (self.path is not None and not fnmatch.fnmatch(path, self.path)):
            return False
        index = self.matched
        self.matched += 1
        return self.nth is None or index == self.nth


@dataclass(frozen=True)
class Call:
    """One recorded call: its operation, path relative to the catalog root, and the fault applied (if any)."""

    op: Op
    path: str
    fault: Fault | None


@dataclass
class FaultPlan:
    """Rules plus the state they share across every store of one catalog: the call log and what was written.

    Nothing is recorded or injected until `armed` (so opening a catalog and its handles is not faulted).
    """

    rules: list[Rule] = field(default_factory=list)
    error: ErrorFactory = local_error
    armed: bool = False
    calls: list[Call] = field(default_factory=list)
    written: set[str] = field(default_factory=set)
    _outage: int = 0  # calls still to fail after a rule with `outage` fired
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wrap(self, store: ObjectStore) -> ObjectStore:
        """A store wrapper for `Catalog(uri, wrap_store=plan.wrap)`."""
        return FaultyStore(store, self)

    @contextmanager
    def active(self) -> Iterator[FaultPlan]:
        """Record calls and apply rules inside the block only."""
        self.armed = True
        try:
            yield self
        finally:
            self.armed = False

    @property
    def fired(self) -> list[Call]:
        """The calls a fault was applied to."""
        return [c for c in self.calls if c.fault is not None]

    def _select(self, op: Op, path: str) -> Rule | None:
        """Record the call and return the first rule that fires on it (the plan's lock is held)."""
        if not self.armed:
            return None
        if self._outage:
            self._outage -= 1
            self.calls.append(Call(op, path, Fault.ERROR))
            return _OUTAGE
        rule = next((r for r in self.rules if r._selects(op, path)), None)
        if rule is not None:
            rule.fired += 1
            self._outage = rule.outage
        self.calls.append(Call(op, path, rule.fault if rule else None))
        return rule


_OUTAGE = Rule(Fault.ERROR)  # what the calls of an outage get


class FaultyStore:
    """An ObjectStore that forwards to `inner` except where the shared FaultPlan's rules say otherwise."""

    def __init__(self, inner: ObjectStore, plan: FaultPlan, prefix: str = "") -> None:
        self._inner = inner
        self._plan = plan
        self._prefix = prefix  # where `inner` sits below the catalog root, for path patterns

    def __repr__(self) -> str:
        return f"FaultyStore({self._inner!r})"

    @property
    def uri(self) -> str:
        return self._inner.uri

    # Distinct from the inner store's identity on purpose: the engine's per-process caches key on the
    # store, so a wrapped catalog never answers from what an unwrapped one cached (and vice versa).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, FaultyStore) and other._plan is self._plan and other._inner == self._inner

    def __hash__(self) -> int:
        return hash((FaultyStore, id(self._plan), self._inner))

    def child(self, prefix: str) -> ObjectStore:
        return FaultyStore(self._inner.child(prefix), self._plan, self._full(prefix))

    def _full(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix and path else (self._prefix or path)

    def _call(self, op: Op, path: str, run: Callable[[], T]) -> T:
        """Run one store call under the plan: record it, and apply the fault a rule selects."""
        full = self._full(path)
        with self._plan._lock:
            rule = self._plan._select(op, full)
        fault = rule.fault if rule is not None else None
        if fault is Fault.ERROR:
            raise self._plan.error(f"injected fault: {op} {full} failed before reaching the store")
        if rule is not None and fault is Fault.LATENCY:
            time.sleep(rule.delay)
            if rule.action is not None:
                rule.action()
        result = run()
        if op in MUTATING and op is not Op.DELETE and result is not False:  # put_if_absent: only if it created
            with self._plan._lock:
                self._plan.written.add(full)
        if fault is Fault.LOST_RESPONSE:
            raise self._plan.error(f"injected fault: {op} {full} took effect but its response was lost")
        return self._distort(fault, result)

    def _distort(self, fault: Fault | None, result: T) -> T:
        """What the caller sees of a call that did take place (APPLIES_TO guarantees the result's type)."""
        if fault is Fault.PRECONDITION_AFTER_RETRY:
            return cast(T, False)  # the SDK's retry found the object its own first attempt had created
        if fault is Fault.TRUNCATED_READ:
            data = cast(bytes, result)
            return cast(T, data[: len(data) // 2])
        if fault is Fault.STALE_LIST:
            with self._plan._lock:
                hidden = set(self._plan.written)
            return cast(T, [i for i in cast(list[FileInfo], result) if self._full(i.path) not in hidden])
        return result

    def read_bytes(self, path: str) -> bytes:
        return self._call(Op.READ_BYTES, path, lambda: self._inner.read_bytes(path))

    def write_bytes(self, path: str, data: bytes) -> None:
        self._call(Op.WRITE_BYTES, path, lambda: self._inner.write_bytes(path, data))

    def put_file(self, path: str, local_file: str) -> int:
        return self._call(Op.PUT_FILE, path, lambda: self._inner.put_file(path, local_file))

    def local_path(self, path: str) -> str | None:
        return self._inner.local_path(path)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        return self._call(Op.PUT_IF_ABSENT, path, lambda: self._inner.put_if_absent(path, data))

    def exists(self, path: str) -> bool:
        return self._call(Op.EXISTS, path, lambda: self._inner.exists(path))

    def size(self, path: str) -> int:
        return self._call(Op.SIZE, path, lambda: self._inner.size(path))

    def list_files(self, prefix: str = "") -> list[FileInfo]:
        return self._call(Op.LIST_FILES, prefix, lambda: self._inner.list_files(prefix))

    def list_dirs(self, prefix: str = "") -> list[str]:
        return self._call(Op.LIST_DIRS, prefix, lambda: self._inner.list_dirs(prefix))

    def delete(self, path: str) -> None:
        self._call(Op.DELETE, path, lambda: self._inner.delete(path))

    def arrow_fs(self) -> tuple[pafs.FileSystem, str]:
        return self._call(Op.ARROW_FS, "", self._inner.arrow_fs)


def record_calls(run: Callable[[], Any], plan: FaultPlan) -> list[Call]:
    """Run `run` with `plan` armed and no rules; the calls it made, in order (a dry run)."""
    plan.rules.clear()
    plan.calls.clear()
    with plan.active():
        run()
    return list(plan.calls)

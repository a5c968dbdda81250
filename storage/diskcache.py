"""Local cache directories of immutable files: atomic entries, pinning, least-recently-used eviction.

Entries are copies of files that are never changed once written (record files, data files), so an entry is
either whole or absent, and two processes filling the same entry write the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator

PART = ".part"

_LOCK = threading.Lock()
_IN_USE: dict[str, int] = {}  # entries being read right now (by this process's threads)


def publish(target: str, write: Callable[[str], None]) -> None:
    """Create the entry `target` by `write(tmp)` to a temporary file renamed into place (readers never see
    part of one); the temporary file is removed if `write` fails."""
    tmp = part_path(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def part_path(target: str) -> str:
    """A new temporary name beside `target` (its directory created) that `trim` leaves alone."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    return f"{target}.{uuid.uuid4().hex}{PART}"


def touch(target: str) -> None:
    """Mark an entry recently used (evicted last); no error if another process just evicted it."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(target)


@contextlib.contextmanager
def pinned(target: str) -> Iterator[None]:
    """Keep `trim` in this process from evicting `target` meanwhile."""
    with _LOCK:
        _IN_USE[target] = _IN_USE.get(target, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            _IN_USE[target] -= 1
            if not _IN_USE[target]:
                del _IN_USE[target]


def trim(directory: str, limit: int) -> None:
    """Evict least recently used entries until `directory` holds at most `limit` bytes; pinned entries and
    entries being written stay."""
    with _LOCK:
        entries = []
        for dirpath, _dirs, names in os.walk(directory):
            for n in names:
                full = os.path.join(dirpath, n)
                if n.endswith(PART) or full in _IN_USE:
                    continue
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                entries.append((st.st_mtime, st.st_size, full))
        total = sum(e[1] for e in entries)
        for _mtime, size, full in sorted(entries):
            if total <= limit:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)
            total -= size

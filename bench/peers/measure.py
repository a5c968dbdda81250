"""Measuring one operation inside a worker process: wall time, peak memory, disk bytes and files.

Peak memory is the process's resident high-water mark (VmHWM) during the operation: the mark is reset
right before it (writing 5 to /proc/self/clear_refs) and read right after, so one long-lived worker per
engine gives a per-operation peak without paying a fresh interpreter and its imports per measurement. The
figure reported is that peak minus the resident size when the operation started (inputs already loaded),
so it counts what the engine allocated, Rust and C++ allocators included (tracemalloc would miss those).

Disk traffic comes from /proc/self/io: `read_bytes` and `write_bytes` are what reached the block layer
(a read served by the page cache counts zero, which is the point of the cold-cache runs). Bytes and files
written are also taken as the change in the table directory's size and file count.

Standard library only: this module runs in both venvs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MB = 1 << 20


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # not Linux, or not allowed: the peak then covers the whole process life
        return False


def _io() -> dict[str, int]:
    try:
        with open("/proc/self/io") as f:
            return {k: int(v) for k, v in (line.split(":") for line in f)}
    except OSError:
        return {}


def tree(path: str) -> tuple[int, int]:
    """(bytes, files) under a directory (0, 0 if it does not exist)."""
    size = files = 0
    for d, _dirs, names in os.walk(path):
        for n in names:
            try:
                size += os.path.getsize(os.path.join(d, n))
                files += 1
            except OSError:  # removed while walking (a concurrent writer's temp file)
                pass
    return size, files


def drop_cache(path: str) -> int:
    """Evict a directory's files from the page cache; returns how many files were dropped.

    Dirty pages cannot be dropped, so each file is fsync'ed first. Pages a process has mapped stay
    resident, so callers close their readers (memory maps) before dropping.
    """
    count = 0
    for d, _dirs, names in os.walk(path):
        for n in names:
            full = os.path.join(d, n)
            try:
                fd = os.open(full, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


@dataclass
class Figures:
    """What one measured operation cost."""

    seconds: float = 0.0
    peak_mb: float = 0.0
    read_mb: float = 0.0
    write_mb: float = 0.0
    bytes_added: int = 0
    files_added: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready figures."""
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


@contextmanager
def probe(path: str | None = None) -> Iterator[Figures]:
    """Measure the body: time, peak memory over the starting RSS, disk IO and what `path` gained."""
    fig = Figures()
    before_tree = tree(path) if path else (0, 0)
    io0 = _io()
    _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    try:
        yield fig
    finally:
        fig.seconds = time.perf_counter() - t0
        fig.peak_mb = max(0, _status_kb("VmHWM") - rss0) / 1024
        io1 = _io()
        fig.read_mb = (io1.get("read_bytes", 0) - io0.get("read_bytes", 0)) / MB
        fig.write_mb = (io1.get("write_bytes", 0) - io0.get("write_bytes", 0)) / MB
        if path:
            after = tree(path)
            fig.bytes_added = after[0] - before_tree[0]
            fig.files_added = after[1] - before_tree[1]


def timed_calls(fn: Callable[[Any], Any], args: list[Any], budget_s: float) -> list[float]:
    """Seconds of each call fn(a) over `args`, stopping early once `budget_s` is spent.

    The budget keeps an engine that needs seconds per row from eating the suite's time; the results
    report how many calls were timed.
    """
    out: list[float] = []
    deadline = time.perf_counter() + budget_s
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        t1 = time.perf_counter()
        out.append(t1 - t0)
        if t1 > deadline:
            break
    return out

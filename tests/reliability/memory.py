"""Peak memory of a call, sampled from the process's resident set while it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psutil

T = TypeVar("T")


def peak_rss_growth(call: Callable[[], T], interval: float = 0.002) -> tuple[int, T | BaseException]:
    """(peak RSS during `call` minus RSS before it, in bytes; its result or the exception it raised)."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome: T | BaseException = call()
    except Exception as exc:  # the caller asserts on it
        outcome = exc
    finally:
        done.set()
        sampler.join()
    peak = max(peak, process.memory_info().rss)
    return peak - baseline, outcome

"""A process-wide helper thread for Arrow work done beside the caller's own.

Arrow copies, compares and decodes without holding the GIL, so a diff that hands half of that work to a
second thread finishes in about the time of the other half, as a full scan decodes on two threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_NAME = "lh-beside"


def _new_helper() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=_NAME)


_HELPER = _new_helper()


def beside(fn: Callable[..., T], *args: Any) -> Future[T]:
    """fn(*args) on the helper thread; run at once on the caller's when the caller is the helper (work it
    queued behind itself and waited for would never start)."""
    if threading.current_thread().name.startswith(_NAME):
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever calls result(), as the helper thread would
            done.set_exception(exc)
        return done
    return _HELPER.submit(fn, *args)


def _after_fork() -> None:
    global _HELPER
    _HELPER = _new_helper()  # a forked child has no threads


os.register_at_fork(after_in_child=_after_fork)

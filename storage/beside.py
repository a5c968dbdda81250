"""A process-wide helper thread for Arrow work done beside the caller's own.

Arrow copies, compares and decodes without holding the GIL, so a diff that hands half of that work to a
second thread finishes in about the time of the other half, as a full scan decodes on two threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .pools import ForkSafePool

T = TypeVar("T")

_HELPER = ForkSafePool(1, "lh-beside")


def beside(fn: Callable[..., T], *args: Any) -> Future[T]:
    """fn(*args) on the helper thread; run at once on the caller's when the caller is the helper (work it
    queued behind itself and waited for would never start)."""
    if threading.current_thread().name.startswith(_HELPER.name):
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever calls result(), as the helper thread would
            done.set_exception(exc)
        return done
    return _HELPER.submit(fn, *args)

"""Process-wide thread pools that survive fork().

A forked child has none of its parent's threads: an executor it inherited would queue work that no thread
ever runs. Each pool here starts a new executor in the child instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ForkSafePool:
    """A ThreadPoolExecutor of `workers` threads named `name`-N, renewed in every forked child."""

    def __init__(self, workers: int, name: str) -> None:
        self.name = name
        self._workers = workers
        self._executor = self._new()
        os.register_at_fork(after_in_child=self._renew)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """fn(*args) on one of the pool's threads."""
        return self._executor.submit(fn, *args)

    def _new(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self.name)

    def _renew(self) -> None:
        self._executor = self._new()

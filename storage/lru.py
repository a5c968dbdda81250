"""A thread-safe cache of values by key that drops the least recently used ones past a byte budget."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """Values by key within `limit` bytes (as `size` counts them).

    A value larger than the whole budget is kept alone when `keep_oversized` (so it is still served once),
    else not cached at all.
    """

    def __init__(self, limit: int, size: Callable[[V], int], keep_oversized: bool) -> None:
        self._limit = limit
        self._size = size
        self._keep_oversized = keep_oversized
        self._bytes = 0
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The cached value, now the most recently used; None if absent."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Cache `value` unless `key` is cached already."""
        with self._lock:
            if key in self._items or (not self._keep_oversized and self._size(value) > self._limit):
                return
            self._items[key] = value
            self._bytes += self._size(value)
            while self._bytes > self._limit and len(self._items) > 1:
                _key, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)

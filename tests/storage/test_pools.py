"""Process-wide pools keep working in a forked child (a DataLoader worker, a multiprocessing pool)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from storage.beside import beside
from storage.pools import ForkSafePool
from tests.fresh_process import in_fresh_process


def _in_child(work: Callable[[], bool]) -> int:
    """Exit status of a forked child that runs `work` (0 when it returned True within 10 s)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os._exit(0 if work() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_pool_used_before_fork_runs_work_in_the_child(request: pytest.FixtureRequest) -> None:
    if not in_fresh_process(request):
        return  # it ran, and passed, in a process that never ran a Prefect flow (see tests/fresh_process.py)
    pool = ForkSafePool(2, "lh-test")
    assert pool.submit(sum, [1, 2]).result(timeout=10) == 3  # its threads exist in the parent now
    assert _in_child(lambda: pool.submit(sum, [3, 4]).result(timeout=10) == 7) == 0


def test_beside_runs_in_a_forked_child(request: pytest.FixtureRequest) -> None:
    if not in_fresh_process(request):
        return
    assert beside(len, "abc").result(timeout=10) == 3
    assert _in_child(lambda: beside(len, "abcd").result(timeout=10) == 4) == 0

"""The helper thread: work handed to it runs beside the caller, and work it hands itself never deadlocks."""

from __future__ import annotations

import threading

import pytest

from storage.beside import beside


def test_work_runs_on_the_helper_and_its_errors_reach_the_caller() -> None:
    assert beside(lambda: threading.current_thread().name).result() != threading.current_thread().name

    def fail() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        beside(fail).result()


def test_work_the_helper_hands_itself_runs_at_once() -> None:
    def nested() -> tuple[str, str]:
        inner = beside(lambda: threading.current_thread().name)
        return threading.current_thread().name, inner.result(timeout=5)

    outer, inner = beside(nested).result(timeout=10)
    assert outer == inner

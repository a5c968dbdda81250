"""8 processes committing to one dataset for a bounded time: nothing lost, nothing twice, all valid.

The fast runs take 10 s each; the full ones (`-m reliability`) LABELHOUSE_LOAD_SECONDS (default 60).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from load import run_load
from report import LoadResult, record

PROCESSES = 8
FAST_SECONDS = 10.0


def full_seconds() -> float:
    return float(os.environ.get("LABELHOUSE_LOAD_SECONDS", "60"))


def check(result: LoadResult) -> None:
    record("load", result)
    assert result.commits > 0, result
    assert (result.rows_lost, result.rows_duplicated, result.rows_unacknowledged) == (0, 0, 0), result
    assert result.errors == 0 and result.valid, result


def test_load_local_fast(tmp_path: Path) -> None:
    check(run_load("local", str(tmp_path / "lake"), {}, PROCESSES, FAST_SECONDS))


@pytest.mark.integration
def test_load_s3_fast(moto_s3: Any) -> None:
    check(run_load("s3", f"s3://{moto_s3.new_bucket()}/lake", moto_s3.options, PROCESSES, FAST_SECONDS))


@pytest.mark.reliability
@pytest.mark.slow
def test_load_local_full(tmp_path: Path) -> None:
    check(run_load("local", str(tmp_path / "lake"), {}, PROCESSES, full_seconds()))


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.integration
def test_load_s3_full(moto_s3: Any) -> None:
    check(run_load("s3", f"s3://{moto_s3.new_bucket()}/lake", moto_s3.options, PROCESSES, full_seconds()))

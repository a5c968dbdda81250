"""Run a test again in a new interpreter, for behaviour that depends on what the process did before.

Forking is the case: once a Prefect flow has run in a process, Prefect's after-fork hook leaves the
child's `threading` state such that `threading._shutdown()` raises AssertionError as the child exits, so
every forked child exits with code 1 after doing its work (Prefect 3.8). A training job that forks
DataLoader workers has not run flows; the test suite's process has. Such tests run in a fresh process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

FRESH_ENV = "LABELHOUSE_FRESH_PROCESS_TEST"


def in_fresh_process(request: pytest.FixtureRequest) -> bool:
    """True inside the fresh process (run the test's body); otherwise run the test there, fail if it fails."""
    nodeid = request.node.nodeid
    if os.environ.get(FRESH_ENV) == nodeid:
        return True
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", nodeid]
    result = subprocess.run(
        command,
        cwd=request.config.rootpath,
        env={**os.environ, FRESH_ENV: nodeid},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"{nodeid} failed in a fresh process:\n{output}"
    return False

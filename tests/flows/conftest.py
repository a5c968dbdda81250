"""Fixtures for the flow tests: Prefect's test harness, a real Prefect server, and `labelhouse serve`.

The harness (a throwaway Prefect API for in-process flow runs) is started once per session with the
heartbeat off, its own PREFECT_HOME and a startup timeout a small machine can meet. The integration tests
share one real Prefect server, started through infra/services.py (so the script is exercised), and one
`labelhouse serve` process pointed at it; both are stopped at teardown.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _flowkit import LABELHOUSE, REPO, LabelStudio, PrefectServer, Served, free_port, load_script, wait_for

_HARNESS_STARTUP_SECONDS = 240


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="session")
def harness(prefect_home: Path) -> Iterator[None]:
    """Flows called in this process run against a throwaway Prefect API for the session."""
    os.environ["PREFECT_HOME"] = str(prefect_home)  # before Prefect reads its settings
    # Generous: a loaded CI machine has needed over 90 s for the first start.
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(_HARNESS_STARTUP_SECONDS)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # its heartbeat races the test database
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=_HARNESS_STARTUP_SECONDS),
    ):
        yield


@pytest.fixture(scope="session")
def services() -> ModuleType:
    return load_script(REPO / "infra" / "services.py")


@pytest.fixture(scope="session")
def prefect_server(
    services: ModuleType, tmp_path_factory: pytest.TempPathFactory, monkeypatch_session: pytest.MonkeyPatch
) -> Iterator[PrefectServer]:
    """A real Prefect server on 127.0.0.1 (SQLite in its own PREFECT_HOME), started by infra/services.py."""
    state = tmp_path_factory.mktemp("infra-state")
    monkeypatch_session.setenv("LABELHOUSE_INFRA_STATE", str(state))
    monkeypatch_session.setenv("LABELHOUSE_PREFECT_HOME", str(state / "prefect-home"))
    running = services.start("prefect-server", port=free_port(), timeout=180)
    client_home = tmp_path_factory.mktemp("client-prefect-home")
    env = {
        **os.environ,
        "PREFECT_API_URL": running.url,
        "PREFECT_HOME": str(client_home),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # served runs start within seconds of their trigger
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "LABELHOUSE_STAGING_DIR": str(tmp_path_factory.mktemp("staging")),
    }
    try:
        yield PrefectServer(running.url, running.url.removesuffix("/api"), env)
    finally:
        services.stop("prefect-server")


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="session")
def served(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`labelhouse serve` for a fresh catalog, its deployments registered with the session's server."""
    catalog = str(tmp_path_factory.mktemp("served") / "lakehouse")
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [LABELHOUSE, "serve", "--catalog", catalog, "--project", "demo"],
            env=prefect_server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "polling for scheduled runs" in log.read_text(errors="replace"), 180, process, log)
        yield Served(catalog, "demo", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@pytest.fixture(scope="session")
def label_studio(label_studio_server: Any) -> LabelStudio:
    """The session's real Label Studio on 127.0.0.1 (tests/conftest.py starts it, once for all directories)."""
    return LabelStudio(label_studio_server.base_url, label_studio_server.token)

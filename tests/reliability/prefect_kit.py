"""A real Prefect server for the process-level reliability tests, which they may stop and start again.

The server is infra/services.py's `prefect-server` (SQLite in its own PREFECT_HOME, on 127.0.0.1), so a
restart keeps the port and the database, as an operator's restart would. Subprocesses (`labelhouse
ingest`, `labelhouse serve`, `labelhouse webhooks`) get `env`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "flows"))  # the flow tests' helpers (not a package)

from _flowkit import LABELHOUSE, free_port, load_script  # noqa: E402
from prefect.client.orchestration import SyncPrefectClient, get_client  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

__all__ = ["LABELHOUSE", "REPO", "Prefect", "Process", "free_port", "prefect_server", "start_process", "wait_until"]

STARTUP_TIMEOUT = 240.0  # a Prefect server on a loaded 2-core machine takes most of a minute


@dataclass
class Prefect:
    """A running Prefect server that the test may restart; `env` is the environment of its clients."""

    services: ModuleType
    port: int
    url: str
    env: dict[str, str]
    restarts: int = 0

    def stop(self) -> None:
        self.services.stop("prefect-server")

    def start(self) -> None:
        self.services.start("prefect-server", port=self.port, timeout=STARTUP_TIMEOUT)

    def restart(self, down_seconds: float = 2.0) -> None:
        """Stop the server (SIGTERM to its process group), stay down a moment, start it on the same port and db."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        with temporary_settings({PREFECT_API_URL: self.url}), get_client(sync_client=True) as client:
            yield client


@contextmanager
def prefect_server(work: Path) -> Iterator[Prefect]:
    """Start a Prefect server with its state under `work`; stop it at the end, whatever happened."""
    services = load_script(REPO / "infra" / "services.py")
    saved = {name: os.environ.get(name) for name in ("LABELHOUSE_INFRA_STATE", "LABELHOUSE_PREFECT_HOME")}
    os.environ["LABELHOUSE_INFRA_STATE"] = str(work / "infra-state")
    os.environ["LABELHOUSE_PREFECT_HOME"] = str(work / "server-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(work / "client-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "LABELHOUSE_STAGING_DIR": str(work / "staging"),
    }
    server = Prefect(services, port, env["PREFECT_API_URL"], env)
    try:
        server.start()
        yield server
    finally:
        services.stop("prefect-server")
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Process:
    """A subprocess in a session of its own (so a kill reaches its children), logging to a file."""

    popen: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group: no handler, no cleanup, like an OOM kill or a lost node."""
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def start_process(command: list[str], env: dict[str, str], log: Path) -> Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes]
    with open(log, "ab") as out:
        popen = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Process(popen, log)


def wait_until(ready: Callable[[], bool], timeout: float, what: str, process: Process | None = None) -> None:
    """Poll `ready()` until true; AssertionError naming `what` (with the process's log) otherwise."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.popen.poll() is not None and not ready():
            raise AssertionError(f"{what}: process exited with {process.popen.returncode}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{process.tail() if process else ''}")
        time.sleep(0.5)

"""Start and stop the services Labelhouse grows into, each on 127.0.0.1, for development and tests.

    python infra/services.py start prefect-server   # prints `export PREFECT_API_URL=...`
    python infra/services.py start prefect-worker   # a process worker on the `labelhouse` pool
    python infra/services.py start ray-head
    python infra/services.py start s3               # moto's S3 server
    python infra/services.py status
    python infra/services.py stop prefect-worker    # or: stop all

Run it with the project's Python (`.venv/bin/python`): the services are that environment's `prefect`,
`ray` and `moto_server`. Standard library only. Each service runs in a session of its own; its state
(pid, port, url, log file) is a JSON file in `$LABELHOUSE_INFRA_STATE` (default
`$TMPDIR/labelhouse-infra`), and `stop` ends exactly that process group. Environment variables are
documented in infra/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_WORK_POOL = "labelhouse"


class ServiceError(RuntimeError):
    """A service could not start or stop; the message says what to look at."""


@dataclass(frozen=True)
class Running:
    """A started service: how to reach it and what to stop."""

    name: str
    pid: int  # also the process group id
    port: int
    url: str
    log_file: str


@dataclass(frozen=True)
class Service:
    """How to launch a service on a port and tell when it is ready."""

    name: str
    default_port: int
    port_env: str
    command: Callable[[int], list[str]]
    url: Callable[[int], str]
    ready: Callable[[int], bool]
    env: Callable[[int], dict[str, str]] = lambda port: {}


def state_dir() -> Path:
    """Where service state files and logs live."""
    path = Path(os.environ.get("LABELHOUSE_INFRA_STATE") or Path(tempfile.gettempdir()) / "labelhouse-infra")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tool(name: str) -> str:
    """An executable of this Python's environment (the project venv), else from PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise ServiceError(f"`{name}` is not installed; run this script with the project's .venv/bin/python")
    return found


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


def _prefect_server_env(port: int) -> dict[str, str]:
    # A server of its own: its own PREFECT_HOME (SQLite database in it unless
    # PREFECT_API_DATABASE_CONNECTION_URL names PostgreSQL), no telemetry, and a UI that calls this
    # server's API (by default it calls port 4200, whatever port the server listens on).
    return {
        "PREFECT_HOME": os.environ.get("LABELHOUSE_PREFECT_HOME") or str(state_dir() / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",  # the server must not talk to another server
        "PREFECT_UI_API_URL": f"http://{HOST}:{port}/api",
    }


def _worker_env(port: int) -> dict[str, str]:
    if not os.environ.get("PREFECT_API_URL"):
        raise ServiceError("set PREFECT_API_URL to the Prefect server the worker polls (start prefect-server first)")
    return {"PREFECT_WORKER_WEBSERVER_HOST": HOST, "PREFECT_WORKER_WEBSERVER_PORT": str(port)}


def _work_pool() -> str:
    return os.environ.get("LABELHOUSE_WORK_POOL") or DEFAULT_WORK_POOL


SERVICES = {
    service.name: service
    for service in (
        Service(
            name="prefect-server",
            default_port=4200,
            port_env="LABELHOUSE_PREFECT_PORT",
            command=lambda port: [_tool("prefect"), "server", "start", "--host", HOST, "--port", str(port)],
            url=lambda port: f"http://{HOST}:{port}/api",
            ready=lambda port: _http_ok(f"http://{HOST}:{port}/api/health"),
            env=_prefect_server_env,
        ),
        Service(
            name="prefect-worker",
            default_port=8080,  # the worker's health-check web server
            port_env="LABELHOUSE_WORKER_PORT",
            command=lambda port: [
                _tool("prefect"),
                "worker",
                "start",
                "--pool",
                _work_pool(),
                "--type",
                "process",
                "--with-healthcheck",
            ],
            url=lambda port: f"http://{HOST}:{port}/health",
            ready=lambda port: _http_ok(f"http://{HOST}:{port}/health"),
            env=_worker_env,
        ),
        Service(
            name="ray-head",
            default_port=6379,
            port_env="LABELHOUSE_RAY_PORT",
            command=lambda port: [
                _tool("ray"),
                "start",
                "--head",
                "--block",
                f"--node-ip-address={HOST}",
                f"--port={port}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            url=lambda port: f"{HOST}:{port}",
            ready=_port_open,
        ),
        Service(
            name="s3",
            default_port=5000,
            port_env="LABELHOUSE_S3_PORT",
            command=lambda port: [_tool("moto_server"), "-H", HOST, "-p", str(port)],
            url=lambda port: f"http://{HOST}:{port}",
            ready=lambda port: _http_ok(f"http://{HOST}:{port}/"),
        ),
    )
}


def _state_file(name: str) -> Path:
    return state_dir() / f"{name}.json"


def running(name: str) -> Running | None:
    """The running service `name` started by this script, or None."""
    path = _state_file(name)
    if not path.exists():
        return None
    state = Running(**json.loads(path.read_text()))
    if not _group_alive(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state


def start(name: str, port: int | None = None, timeout: float = 120.0) -> Running:
    """Start service `name` on `port` (default: its env variable, else its usual port) and wait until ready."""
    service = _service(name)
    if (current := running(name)) is not None:
        return current
    port = port or int(os.environ.get(service.port_env) or service.default_port)
    if _port_open(port):
        raise ServiceError(f"{HOST}:{port} is taken; free it or set {service.port_env} to another port")
    log_file = state_dir() / f"{name}.log"
    env = {**os.environ, **service.env(port)}
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            service.command(port), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    state = Running(name, process.pid, port, service.url(port), str(log_file))
    _state_file(name).write_text(json.dumps(asdict(state)))
    deadline = time.monotonic() + timeout
    while not service.ready(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(name)
            why = f"exited with {process.returncode}" if process.returncode is not None else f"not ready in {timeout}s"
            raise ServiceError(f"{name} {why}; its log {log_file} ends with:\n{_tail(log_file)}")
        time.sleep(0.5)
    return state


def stop(name: str, grace: float = 15.0) -> bool:
    """Stop service `name` (its whole process group); False if it was not running."""
    state = running(name)
    _state_file(name).unlink(missing_ok=True)
    if state is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(state.pid) and time.monotonic() < deadline:
        _reap(state.pid)
        time.sleep(0.2)
    if _group_alive(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGKILL)
    _reap(state.pid)
    return True


def _service(name: str) -> Service:
    if name not in SERVICES:
        raise ServiceError(f"unknown service {name!r}; services: {', '.join(SERVICES)}")
    return SERVICES[name]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    # A leader started by this process stays a zombie (and its group "alive") until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path | str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="start a service and wait until it is ready")
    start_cmd.add_argument("name", choices=list(SERVICES))
    start_cmd.add_argument("--port", type=int, default=None)
    stop_cmd = sub.add_parser("stop", help="stop a service (or all)")
    stop_cmd.add_argument("name", choices=[*SERVICES, "all"])
    sub.add_parser("status", help="list the running services")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            state = start(args.name, args.port)
            print(json.dumps(asdict(state)))
            if args.name == "prefect-server":
                print(f"export PREFECT_API_URL={state.url}")
        elif args.command == "stop":
            names = list(SERVICES) if args.name == "all" else [args.name]
            for name in names:
                print(f"{name}: {'stopped' if stop(name) else 'not running'}")
        else:
            for name in SERVICES:
                found = running(name)
                print(f"{name}: {f'running at {found.url} (pid {found.pid})' if found else 'not running'}")
    except ServiceError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

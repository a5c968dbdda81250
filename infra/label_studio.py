"""Install and run a throwaway Label Studio 1.23.2 on 127.0.0.1 for development and integration tests.

Label Studio lives in its own virtualenv (default `.venv-label-studio` at the repo root): it pins
dozens of packages (Django, DRF, pydantic, numpy...) that must not move the project's own. Standard
library only, so any Python 3.11 can run it:

    python infra/label_studio.py install
    python infra/label_studio.py start       # prints base URL and token, writes a state file
    python infra/label_studio.py stop
    python infra/label_studio.py run         # foreground, Ctrl-C stops it

Every server gets a fresh data directory in a temp dir, removed at stop.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO_ROOT / ".venv-label-studio"
USERNAME = "labelhouse@localhost.localdomain"
DB_NAME = "label_studio.sqlite3"  # Label Studio's file name inside its data dir
# Our files inside the venv dir (git ignores `.venv-*/`): a migrated database, an install lock, and the
# state of a server started from the command line.
TEMPLATE_DB = f"labelhouse-migrated-{VERSION}.sqlite3"
INSTALL_LOCK = ".labelhouse-install.lock"
STATE_FILE = "labelhouse-server.json"


class LabelStudioInfraError(RuntimeError):
    """Label Studio could not be installed, started or stopped; the message says what to look at."""


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio: where it listens, how to authenticate, and what to clean up."""

    base_url: str
    token: str
    username: str
    password: str
    pid: int  # also the process group id: the server runs in a session of its own
    data_dir: str
    log_file: str


def venv_path() -> Path:
    """The Label Studio virtualenv: `$LABELHOUSE_LABEL_STUDIO_VENV` or `.venv-label-studio` at the repo root."""
    return Path(os.environ.get("LABELHOUSE_LABEL_STUDIO_VENV", DEFAULT_VENV))


def installed_version(venv: Path) -> str | None:
    """The label-studio version installed in `venv`, or None when it is missing or broken."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "label-studio").exists() or not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_installed(venv: Path | None = None) -> Path:
    """Install label-studio==1.23.2 into its own venv unless already there; return the venv path.

    Idempotent and safe to call from parallel processes (a file lock serialises installs). pip's
    download cache is left on, so a reinstall after deleting the venv needs no downloads. Also keeps a
    migrated SQLite database in the venv, copied into each new server's data dir: running Label
    Studio's migrations takes 30-60 s, longer than the rest of a start.
    """
    venv = venv or venv_path()
    venv.mkdir(parents=True, exist_ok=True)
    with open(venv / INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(venv) != VERSION:
            # No --clear: it would delete the lock file we hold. Re-running venv and pip repairs a
            # half-made venv and moves another label-studio version to this one.
            _run([sys.executable, "-m", "venv", str(venv)], what=f"creating {venv}")
            _run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"label-studio=={VERSION}"],
                what=f"installing label-studio=={VERSION} into {venv}",
            )
        if not (venv / TEMPLATE_DB).exists():
            _migrate_template(venv)
    return venv


def _migrate_template(venv: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="labelhouse-label-studio-migrate-") as data_dir:
        # `init --quiet` without a username only runs the migrations and creates no user.
        _run(
            [str(venv / "bin" / "label-studio"), "init", "--quiet"],
            what="migrating a template database",
            env=_base_env(data_dir),
        )
        partial = venv / f"{TEMPLATE_DB}.partial"
        shutil.copyfile(Path(data_dir) / DB_NAME, partial)
        os.replace(partial, venv / TEMPLATE_DB)


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise LabelStudioInfraError(
            f"{what} failed: `{' '.join(command)}` exited with {done.returncode}:\n"
            f"{(done.stdout + done.stderr)[-3000:]}\nFix the cause (network to PyPI, disk space) and run "
            f"`python infra/label_studio.py install` again."
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env(data_dir: str) -> dict[str, str]:
    # Built from scratch rather than inherited: Label Studio also reads unprefixed names (HOST, PORT,
    # USERNAME, DEBUG, DJANGO_DB, POSTGRE_*...), which a developer's shell or CI may set for other tools.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", data_dir),
        "LANG": "C.UTF-8",
        "TMPDIR": tempfile.gettempdir(),
        "LABEL_STUDIO_BASE_DATA_DIR": data_dir,
        # No calls out of the machine: version check, usage analytics, Sentry.
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
    }


def server_env(base_url: str, token: str, password: str, data_dir: str) -> dict[str, str]:
    """The whole environment of the server process: the admin user, its legacy API token, no SSRF guard."""
    return _base_env(data_dir) | {
        "LABEL_STUDIO_HOST": base_url,  # links in API responses and exports point back here
        "LABEL_STUDIO_USERNAME": USERNAME,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # Webhooks go to receivers on 127.0.0.1, which SSRF protection would refuse.
        "SSRF_PROTECTION_ENABLED": "false",
    }


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_file: str, timeout: float) -> None:
    """Poll `/health` until it answers 200; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabelStudioInfraError(
                f"Label Studio exited with code {process.returncode} before {base_url}/health answered; "
                f"see {log_file}:\n{_tail(log_file)}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise LabelStudioInfraError(
        f"Label Studio did not answer {base_url}/health within {timeout:.0f} s; see {log_file}:\n{_tail(log_file)}"
    )


def start(venv: Path | None = None, port: int | None = None, timeout: float = 240.0) -> LabelStudioServer:
    """Install if needed, start Label Studio on 127.0.0.1 with a fresh data dir, and wait until healthy.

    The caller owns the server and must `stop()` it. The token is a legacy API token for the
    `Authorization: Token <token>` header.
    """
    venv = ensure_installed(venv)
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    token = secrets.token_hex(20)
    password = secrets.token_urlsafe(16)
    data_dir = tempfile.mkdtemp(prefix="labelhouse-label-studio-")
    shutil.copyfile(venv / TEMPLATE_DB, os.path.join(data_dir, DB_NAME))
    log_file = os.path.join(data_dir, "server.log")
    command = [
        str(venv / "bin" / "label-studio"),
        "start",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
    ]
    with open(log_file, "wb") as log:
        # A session of its own makes the server (and any child it forks) one process group to kill.
        process = subprocess.Popen(
            command,
            env=server_env(base_url, token, password, data_dir),
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LabelStudioServer(base_url, token, USERNAME, password, process.pid, data_dir, log_file)
    try:
        wait_healthy(base_url, process, log_file, timeout)
    except BaseException:
        stop(server, keep_data=True)
        raise
    return server


def stop(server: LabelStudioServer, keep_data: bool = False, grace: float = 10.0) -> None:
    """Stop the server's whole process group (SIGTERM, then SIGKILL) and remove its data dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        deadline = time.monotonic() + grace
        while _group_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _group_alive(server.pid):
            break
    else:
        raise LabelStudioInfraError(f"process group {server.pid} survived SIGKILL; check `ps -g {server.pid}`")
    if not keep_data:
        shutil.rmtree(server.data_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    # Reap the leader first when it is our child: a zombie still counts as a group member for killpg.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: str, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    """Command line: install | start | stop | run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["install", "start", "stop", "run"])
    parser.add_argument("--venv", type=Path, default=None, help="Label Studio virtualenv")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    state_file = (args.venv or venv_path()) / STATE_FILE

    if args.command == "install":
        began = time.monotonic()
        venv = ensure_installed(args.venv)
        print(f"label-studio {VERSION} in {venv} ({time.monotonic() - began:.0f} s)")
    elif args.command == "stop":
        if not state_file.exists():
            print(f"nothing to stop: no {state_file}")
            return 0
        stop(LabelStudioServer(**json.loads(state_file.read_text())))
        state_file.unlink()
        print("stopped")
    else:
        if args.command == "start" and state_file.exists():
            raise SystemExit(f"{state_file} exists: run `stop` first (or delete it if that server is gone)")
        began = time.monotonic()
        server = start(args.venv, args.port)
        print(f"Label Studio at {server.base_url} (up in {time.monotonic() - began:.0f} s)")
        print(f"token: {server.token}\nuser: {server.username} / {server.password}\nlog: {server.log_file}")
        if args.command == "start":
            state_file.write_text(json.dumps(asdict(server)))
            print("stop it with `python infra/label_studio.py stop`")
            return 0
        # `run`: the server is in a session of its own, so stop it on Ctrl-C and on SIGTERM alike.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures shared by every test directory.

`moto_s3` runs moto's S3 server as a real HTTP endpoint on 127.0.0.1 (a separate process, not an
in-process mock), so S3 catalogs are exercised through the same boto3 and pyarrow code paths as in
production while nothing can reach real AWS. `label_studio_server` is one real Label Studio for the
session, shared by the connector tests (tests/tasks) and the flow tests (tests/flows).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_LABEL_STUDIO_LAUNCHER = Path(__file__).resolve().parent.parent / "infra" / "label_studio.py"
MOTO_HOST = "127.0.0.1"
MOTO_REGION = "us-east-1"
MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing"
_STARTUP_SECONDS = 30.0

# Variables that could send a request to real AWS or pick up someone's profile, credentials or endpoint.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((MOTO_HOST, 0))
        return int(s.getsockname()[1])


def _moto_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    return [*base, "-H", MOTO_HOST, "-p", str(port)]


def _answers(endpoint: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(f"{endpoint}/moto-api/data.json", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server's whole process group (it was started in its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def run_moto_server(log_dir: Path) -> Iterator[str]:
    """Run `moto_server` on a free port of 127.0.0.1 until the block exits; yields its endpoint URL.

    Retries on another port if the one picked was taken in the meantime. The server's access log is
    `log_dir/moto-<port>.log`.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = _free_port()
        endpoint = f"http://{MOTO_HOST}:{port}"
        log_path = log_dir / f"moto-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                _moto_command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown can stop all of it
            )
        try:
            deadline = time.monotonic() + _STARTUP_SECONDS
            while proc.poll() is None and time.monotonic() < deadline and not _answers(endpoint):
                time.sleep(0.05)
            if proc.poll() is None and _answers(endpoint):
                yield endpoint
                return
            if attempt == 2:
                raise RuntimeError(
                    f"moto_server did not answer on {endpoint} (exit code {proc.poll()}); "
                    f"log:\n{log_path.read_text(errors='replace')[-4000:]}"
                )
        finally:
            _stop(proc)


@dataclass
class MotoS3:
    """A running moto S3 server: catalog options for it and a factory of fresh, empty buckets."""

    endpoint_url: str
    options: dict[str, Any] = field(default_factory=dict)  # Catalog("s3://...", **options)
    log_path: Path | None = None  # the server's access log (one line per request, with its status)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def client(self) -> Any:
        """A boto3 S3 client on the server (for setting up and inspecting buckets)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=MOTO_REGION,
            aws_access_key_id=MOTO_ACCESS_KEY,
            aws_secret_access_key=MOTO_SECRET_KEY,
        )

    def new_bucket(self) -> str:
        """Create an empty bucket with a unique name and return the name."""
        name = f"lh-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's S3 server on 127.0.0.1 for the whole session, with AWS pointed away from the real cloud.

    Use `Catalog(f"s3://{moto_s3.new_bucket()}/prefix", **moto_s3.options)`.
    """
    pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
    pytest.importorskip("boto3", reason="boto3 is needed for the S3 tests")
    aws_home = tmp_path_factory.mktemp("aws-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_UNSET:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
        mp.setenv("AWS_REGION", MOTO_REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_home / "credentials"))  # absent: no profiles
        mp.setenv("AWS_CONFIG_FILE", str(aws_home / "config"))
        for name in ("NO_PROXY", "no_proxy"):  # requests to the local server must not go through a proxy
            mp.setenv(name, ",".join(filter(None, [os.environ.get(name), MOTO_HOST, "localhost"])))
        log_dir = tmp_path_factory.mktemp("moto-log")
        with run_moto_server(log_dir) as endpoint:
            yield MotoS3(
                endpoint_url=endpoint,
                log_path=log_dir / f"moto-{endpoint.rsplit(':', 1)[1]}.log",
                options={
                    "endpoint_url": endpoint,
                    "access_key": MOTO_ACCESS_KEY,
                    "secret_key": MOTO_SECRET_KEY,
                    "region": MOTO_REGION,
                },
            )


@pytest.fixture
def start_moto_server(moto_s3: MotoS3, tmp_path: Path) -> Callable[[], AbstractContextManager[str]]:
    """Start a private moto server (same safe AWS environment as `moto_s3`) that a test may stop or lock down.

    `with start_moto_server() as endpoint_url: ...`; the server is stopped when the block exits.
    """
    return lambda: run_moto_server(tmp_path / "moto-private")


def _load_label_studio_launcher() -> ModuleType:
    # infra/ is scripts, not an installed package: load the launcher from its path.
    spec = importlib.util.spec_from_file_location("labelhouse_infra_label_studio", _LABEL_STUDIO_LAUNCHER)
    assert spec is not None and spec.loader is not None, f"cannot load {_LABEL_STUDIO_LAUNCHER}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def label_studio_server() -> Iterator[Any]:
    """A Label Studio 1.23.2 on 127.0.0.1 for the session, installed first if missing (a `LabelStudioServer`).

    Started once however many test directories use it (a start costs tens of seconds). The server's
    process group and data dir are removed at teardown, whatever the tests did.
    """
    launcher = _load_label_studio_launcher()
    server = launcher.start()
    try:
        yield server
    finally:
        launcher.stop(server)

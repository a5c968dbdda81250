"""Helpers of the flow tests: fixture paths, loading infra scripts, free ports, waiting for processes."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "label-studio"
EXPORT = FIXTURES / "export_json.json"
CONFIG = FIXTURES / "label_studio_config.xml"
LABELHOUSE = str(Path(sys.executable).parent / "labelhouse")


def load_script(path: Path) -> ModuleType:
    """A module loaded from a script path (infra/ holds scripts, not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"labelhouse_infra_{path.stem}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    ready: object, timeout: float, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Poll `ready()` until true; fail with the process's log if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            pytest.fail(f"process exited with {process.returncode}:\n{log.read_text()[-4000:] if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready within {timeout}s:\n{log.read_text()[-4000:] if log else ''}")
        time.sleep(1)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    ui_url: str
    env: dict[str, str]  # the environment of a process that talks to this server


@dataclass(frozen=True)
class Served:
    catalog: str
    project: str
    log: Path


@dataclass(frozen=True)
class LabelStudio:
    base_url: str
    token: str

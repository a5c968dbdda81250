"""Fixtures for the source-connector tests: a real Label Studio for the integration tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

_LAUNCHER = Path(__file__).resolve().parents[2] / "infra" / "label_studio.py"


def _load_launcher() -> ModuleType:
    # infra/ is scripts, not an installed package: load the launcher from its path.
    spec = importlib.util.spec_from_file_location("labelhouse_infra_label_studio", _LAUNCHER)
    assert spec is not None and spec.loader is not None, f"cannot load {_LAUNCHER}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def label_studio() -> Iterator[tuple[str, str]]:
    """A Label Studio 1.23.2 on 127.0.0.1 for the session, installed first if missing: (base_url, token).

    The token goes as `Authorization: Token <token>`. The server's process group and data dir are
    removed at teardown, whatever the tests did.
    """
    launcher = _load_launcher()
    server = launcher.start()
    try:
        yield server.base_url, server.token
    finally:
        launcher.stop(server)

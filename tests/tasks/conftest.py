"""Fixtures for the source-connector tests: a real Label Studio for the integration tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def label_studio(label_studio_server: Any) -> tuple[str, str]:
    """The session's Label Studio 1.23.2 on 127.0.0.1 (see tests/conftest.py): (base_url, token).

    The token goes as `Authorization: Token <token>`.
    """
    return label_studio_server.base_url, label_studio_server.token

"""Fixtures for the Label Studio parsing tests: the captured fixtures and small one-task exports."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tasks.label_studio import LabelingConfig, ParsedExport, parse_export, parse_labeling_config

_LS_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label-studio"


@pytest.fixture(scope="session")
def ls_config() -> LabelingConfig:
    return parse_labeling_config((_LS_FIXTURES / "label_studio_config.xml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def ls_fixture() -> Callable[..., ParsedExport]:
    """Parse a Label Studio fixture file by name."""

    def parse(name: str, **options: Any) -> ParsedExport:
        return parse_export((_LS_FIXTURES / name).read_bytes(), name=name, **options)

    return parse


@pytest.fixture(scope="session")
def parse_results() -> Callable[..., pa.Table]:
    """Parse one task with one annotation holding `results`; return its annotation rows."""

    def parse(results: list[dict[str, Any]], data: dict[str, Any] | None = None, **options: Any) -> pa.Table:
        task = {
            "id": 1,
            "data": data or {"image": "https://example.com/a.jpg"},
            "annotations": [{"id": 1, "completed_by": 1, "result": results}],
        }
        return parse_export(json.dumps([task]), name="unit.json", **options).changes.annotations

    return parse

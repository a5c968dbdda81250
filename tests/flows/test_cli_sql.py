"""`labelhouse sql`: queries over the catalog's datasets, pinned versions, tables and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage import Catalog

SCHEMA = pa.schema(
    [pa.field("id", pa.int64(), nullable=False), pa.field("label", pa.string()), pa.field("image", pa.binary())]
)


@pytest.fixture
def catalog(tmp_path: Path) -> str:
    """`frames`: snapshot 1 has ids 1-3, snapshot 2 deletes id 2."""
    uri = str(tmp_path / "lakehouse")
    ds = Catalog(uri).create_dataset("frames", SCHEMA, primary_keys=["id"], record_fields=["image"])
    ds.append({"id": [1, 2, 3], "label": ["cat", "dog", "cat"], "image": [b"\x01"] * 3})
    ds.delete(keys=[2])
    return uri


def test_prints_the_result_as_a_table(catalog: str) -> None:
    query = "SELECT label, count(*) AS n FROM frames GROUP BY 1"
    result = CliRunner().invoke(app, ["sql", query, "--catalog", catalog])
    assert result.exit_code == 0, result.output
    assert "1 row" in result.stdout
    assert "cat" in result.stdout and "2" in result.stdout and "dog" not in result.stdout


def test_json_rows_at_a_pinned_version(catalog: str) -> None:
    args = ["sql", "SELECT id FROM frames ORDER BY id", "--version", "frames=1", "--json", "--catalog", catalog]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"columns": ["id"], "rows": [{"id": 1}, {"id": 2}, {"id": 3}]}


def test_a_malformed_pin_is_a_usage_error_and_a_bad_query_a_failure(catalog: str) -> None:
    bad_pin = CliRunner().invoke(app, ["sql", "SELECT 1", "--version", "frames", "--catalog", catalog])
    assert bad_pin.exit_code == 2
    bad_query = CliRunner().invoke(app, ["sql", "SELECT image FROM frames", "--catalog", catalog])
    assert bad_query.exit_code == 1
    assert "record fields" in bad_query.output

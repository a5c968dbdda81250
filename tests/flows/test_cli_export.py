"""`labelhouse export`: every format writes a loadable file pinned to the snapshots it names."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage import Catalog
from storage.groundtruth import ensure_groundtruth
from tasks.exports import read_provenance
from tasks.label_studio import parse_export

EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "label-studio" / "export_json.json"


MOMENT: dict[str, str] = {}


@pytest.fixture
def catalog(tmp_path: Path) -> str:
    root = str(tmp_path / "lake")
    groundtruth = ensure_groundtruth(Catalog(root), "demo")
    changes = parse_export(EXPORT.read_bytes(), name=EXPORT.name).changes
    groundtruth.items.upsert(changes.items)
    groundtruth.annotations.upsert(changes.annotations)
    time.sleep(0.01)
    MOMENT["before_delete"] = datetime.now(UTC).isoformat()
    groundtruth.annotations.delete(keys=[changes.annotations.column("id")[0].as_py()])  # a later version
    return root


def _export(catalog: str, out: Path, fmt: str, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app, ["export", "demo", str(out), "--format", fmt, "--catalog", catalog, "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_every_format_writes_a_loadable_file(catalog: str, tmp_path: Path) -> None:
    coco = _export(catalog, tmp_path / "coco.json", "coco")
    document = json.loads((tmp_path / "coco.json").read_text())
    assert (
        document["images"]
        and document["annotations"]
        and coco["snapshots"]
        == {
            "items": 1,
            "annotations": 2,
            "predictions": 0,
        }
    )
    _export(catalog, tmp_path / "ls.json", "label-studio")
    assert isinstance(json.loads((tmp_path / "ls.json").read_text()), list)
    _export(catalog, tmp_path / "lb.ndjson", "labelbox")
    assert all(json.loads(line) for line in (tmp_path / "lb.ndjson").read_text().splitlines())
    table = _export(catalog, tmp_path / "train.parquet", "parquet")
    assert pq.read_table(tmp_path / "train.parquet").num_rows == table["rows"]
    assert read_provenance(tmp_path / "train.parquet")["snapshots"] == table["snapshots"]


def test_export_pins_a_version(catalog: str, tmp_path: Path) -> None:
    head = _export(catalog, tmp_path / "head.json", "coco")
    old = _export(catalog, tmp_path / "old.json", "coco", "--version", MOMENT["before_delete"])
    assert old["snapshots"] == {"items": 1, "annotations": 1, "predictions": 0} != head["snapshots"]
    count = [len(json.loads((tmp_path / f).read_text())["annotations"]) for f in ("old.json", "head.json")]
    assert count[0] >= count[1]


def test_unknown_project_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "nope", str(tmp_path / "o.json"), "--catalog", str(tmp_path / "l")])
    assert result.exit_code == 1 and "nope" in result.stderr

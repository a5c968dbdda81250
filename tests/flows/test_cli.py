"""The `labelhouse` CLI through typer's runner: each command's output, errors and exit codes."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner, Result

from flows.cli import app
from flows.cli.options import parse_version
from storage import Catalog

SCHEMA = pa.schema(
    [pa.field("id", pa.int64(), nullable=False), pa.field("label", pa.string()), pa.field("image", pa.binary())]
)


@pytest.fixture
def catalog(tmp_path: Path) -> str:
    """`frames`: snapshot 1 appends ids 1-3 (tagged `reviewed`), snapshot 2 relabels id 2 from dog to bird."""
    uri = str(tmp_path / "lakehouse")
    ds = Catalog(uri).create_dataset("frames", SCHEMA, primary_keys=["id"], record_fields=["image"])
    ds.append({"id": [1, 2, 3], "label": ["cat", "dog", "cat"], "image": [b"\x01" * 16] * 3}, message="first")
    ds.upsert({"id": [2], "label": ["bird"], "image": [b"\x02" * 16]})
    ds.tag("reviewed", version=1)
    return uri


def lh(catalog: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--catalog", catalog])


def lh_json(catalog: str, *args: str) -> Any:
    result = lh(catalog, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def labels(rows: list[dict[str, Any]]) -> dict[int, str]:
    return {r["id"]: r["label"] for r in rows}


def test_datasets_lists_each_dataset_at_its_head(catalog: str) -> None:
    [frames] = lh_json(catalog, "datasets")
    assert frames["name"] == "frames"
    assert (frames["snapshot_id"], frames["rows"], frames["tags"]) == (2, 3, ["reviewed"])
    assert "frames" in lh(catalog, "datasets").stdout


def test_datasets_of_an_empty_catalog(tmp_path: Path) -> None:
    assert lh_json(str(tmp_path / "empty"), "datasets") == []


def test_catalog_comes_from_the_environment(catalog: str) -> None:
    result = CliRunner().invoke(app, ["datasets", "--json"], env={"LABELHOUSE_CATALOG": catalog})
    assert [d["name"] for d in json.loads(result.stdout)] == ["frames"]


def test_log_lists_versions_oldest_first_with_tags(catalog: str) -> None:
    versions = lh_json(catalog, "log", "frames")
    assert [v["snapshot_id"] for v in versions] == [0, 1, 2]
    assert [v["operation"] for v in versions] == ["create", "append", "upsert"]
    assert versions[1]["tags"] == ["reviewed"]
    assert versions[2]["summary"]["rows_updated"] == 1
    table = lh(catalog, "log", "frames").stdout
    assert "reviewed" in table and "upsert" in table


def test_log_of_a_branch_follows_its_ancestors(catalog: str) -> None:
    dev = Catalog(catalog).dataset("frames").create_branch("dev", from_version=1)  # snapshot 3
    dev.delete(keys=[3])  # snapshot 4
    assert [v["snapshot_id"] for v in lh_json(catalog, "log", "frames", "--branch", "dev")] == [0, 1, 3, 4]
    assert [v["snapshot_id"] for v in lh_json(catalog, "log", "frames", "--branch", "main")] == [0, 1, 2]


@pytest.mark.parametrize(
    ("version", "label_of_2"), [("1", "dog"), ("reviewed", "dog"), ("main", "bird"), (None, "bird")]
)
def test_show_reads_the_named_version(catalog: str, version: str | None, label_of_2: str) -> None:
    args = ["show", "frames"] if version is None else ["show", "frames", "--version", version]
    shown = lh_json(catalog, *args)
    assert labels(shown["rows"])[2] == label_of_2
    assert "image" not in shown["rows"][0]  # record fields are left out


def test_show_takes_an_iso_datetime(catalog: str) -> None:
    first = Catalog(catalog).dataset("frames").snapshot(1).created_at
    shown = lh_json(catalog, "show", "frames", "--version", first.isoformat())
    assert shown["snapshot_id"] == 1
    assert "no snapshot at or before" in lh(catalog, "show", "frames", "--version", "2000-01-01").stderr


def test_show_limit_and_where(catalog: str) -> None:
    assert len(lh_json(catalog, "show", "frames", "--limit", "1")["rows"]) == 1
    assert lh_json(catalog, "show", "frames", "--limit", "0")["rows"] == []
    assert labels(lh_json(catalog, "show", "frames", "--where", "label = 'cat'")["rows"]) == {1: "cat", 3: "cat"}
    table = lh(catalog, "show", "frames", "--where", "id > 1").stdout
    assert "bird" in table and "where" in table


def test_show_with_a_malformed_where_is_a_usage_error(catalog: str) -> None:
    result = lh(catalog, "show", "frames", "--where", "nope = 1")
    assert result.exit_code == 2
    assert "nope" in result.stderr


def test_tag_untag_and_force(catalog: str) -> None:
    assert lh_json(catalog, "tag", "frames", "v1", "--version", "2") == {
        "dataset": "frames",
        "tag": "v1",
        "snapshot_id": 2,
    }
    clash = lh(catalog, "tag", "frames", "v1", "--version", "1")
    assert clash.exit_code == 1 and "already names snapshot 2" in clash.stderr
    assert lh_json(catalog, "tag", "frames", "v1", "--version", "1", "--force")["snapshot_id"] == 1
    assert lh_json(catalog, "untag", "frames", "v1")["removed"] is True
    again = lh(catalog, "untag", "frames", "v1")
    assert again.exit_code == 1 and "no tag 'v1'" in again.stderr
    assert "Tagged snapshot 2 of frames as latest" in lh(catalog, "tag", "frames", "latest").stdout


def test_restore_commits_the_old_content(catalog: str) -> None:
    snap = lh_json(catalog, "restore", "frames", "reviewed")
    assert (snap["snapshot_id"], snap["operation"], snap["summary"]["restored_from"]) == (3, "restore", 1)
    assert labels(lh_json(catalog, "show", "frames")["rows"])[2] == "dog"
    assert "as new snapshot 4" in lh(catalog, "restore", "frames", "2").stdout


def test_validate_accepts_a_sound_dataset(catalog: str) -> None:
    report = lh_json(catalog, "validate", "frames")
    assert report["valid"] is True and report["snapshots"] == 3 and report["problems"] == []
    assert "frames is valid" in lh(catalog, "validate", "frames").stdout


def test_validate_names_a_missing_file(catalog: str) -> None:
    data_file = next((Path(catalog) / "frames" / "data").iterdir())
    data_file.unlink()
    result = lh(catalog, "validate", "frames")
    assert result.exit_code == 1
    assert f"data/{data_file.name}: data file is missing" in result.stderr
    assert "Traceback" not in result.output


def test_vacuum_removes_old_unreferenced_files_only(catalog: str) -> None:
    orphan = Path(catalog) / "frames" / "data" / "orphan.parquet"
    orphan.write_bytes(b"left by a crashed writer")
    assert lh_json(catalog, "vacuum", "frames")["files_removed"] == 0  # younger than the default grace period
    dry = lh_json(catalog, "vacuum", "frames", "--grace-seconds", "0", "--dry-run")
    assert dry["removed"] == ["data/orphan.parquet"] and orphan.exists()
    assert "data/orphan.parquet" in lh(catalog, "vacuum", "frames", "--grace-seconds", "0", "--dry-run").stdout
    assert lh_json(catalog, "vacuum", "frames", "--grace-seconds", "0")["files_removed"] == 1
    assert not orphan.exists()
    assert lh_json(catalog, "validate", "frames")["valid"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["log", "nope"],
        ["show", "nope"],
        ["tag", "nope", "t"],
        ["untag", "nope", "t"],
        ["restore", "nope", "1"],
        ["validate", "nope"],
        ["vacuum", "nope"],
    ],
)
def test_unknown_dataset_exits_1_naming_it(catalog: str, args: list[str]) -> None:
    result = lh(catalog, *args, "--json")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no dataset 'nope'")
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "frames", "--version", "9"], "snapshot 9 does not exist"),
        (["restore", "frames", "nope"], "no tag or branch 'nope'"),
        (["log", "frames", "--branch", "nope"], "no branch 'nope'"),
    ],
)
def test_unknown_version_exits_1(catalog: str, args: list[str], message: str) -> None:
    result = lh(catalog, *args)
    assert result.exit_code == 1
    assert message in result.stderr


@pytest.mark.parametrize(
    "args", [["log"], ["show", "frames", "--limit", "-1"], ["datasets", "--nope"], ["tag", "frames"]]
)
def test_usage_errors_exit_2(catalog: str, args: list[str]) -> None:
    assert lh(catalog, *args).exit_code == 2


def test_parse_version() -> None:
    assert parse_version("12") == 12
    assert parse_version("2024-06-01T12:00:00Z") == datetime.fromisoformat("2024-06-01T12:00:00+00:00")
    assert parse_version("reviewed") == "reviewed"
    assert parse_version("-1") == "-1"


@pytest.mark.usefixtures("harness")  # the demo's flows run on the session's test API
def test_demo_runs_twice_on_the_same_catalog(tmp_path: Path) -> None:
    uri = str(tmp_path / "lakehouse")
    first = lh(uri, "demo")
    assert first.exit_code == 0, first.output
    assert "Summary" in first.stdout and "Versions of frames" in first.stdout
    again = lh_json(uri, "demo")
    assert [v["operation"] for v in again["versions"]] == ["create", "append", "upsert", "delete", "restore"]
    assert again["facts"]["rows_at_reviewed"] == 7 and again["facts"]["rows_now"] == 8
    assert again["facts"]["cats_at_reviewed"] == 1 and again["facts"]["cats_now"] == 2
    assert lh_json(uri, "validate", "frames")["valid"] is True
    assert again["facts"]["reingest_new_snapshots"] == 0 and again["facts"]["rejects_after_fix"] == 0
    assert again["facts"]["coco_quarantined"] == 1 and again["facts"]["nearest_labels"][0] == "cyclist"
    assert again["facts"]["index_vectors_added"] > 0
    demo = ["annotations", "annotations__rejects", "box_areas", "items", "items__rejects", "label_embeddings"]
    demo += ["label_index", "predictions", "predictions__rejects"]
    coco = ["annotations", "annotations__rejects", "items", "items__rejects", "predictions"]
    listed = ["_catalog.json", *(f"demo__{name}" for name in demo), *(f"demococo__{name}" for name in coco)]
    assert sorted(os.listdir(uri)) == sorted([*listed, "frames"])

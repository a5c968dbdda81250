"""The orchestration commands of the CLI: ingest, diff, history, branch, merge, and serve's preconditions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _flowkit import CONFIG, EXPORT, FIXTURES, LABELHOUSE
from typer.testing import CliRunner, Result

from flows.cli import app
from storage import Catalog


def lh(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def lh_json(*args: str) -> Any:
    result = lh(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, harness: None) -> str:
    """A catalog with the fixture export ingested through the CLI, then annotation 2 relabeled."""
    catalog = str(tmp_path_factory.mktemp("cli") / "lakehouse")
    first = lh_json(
        "ingest", "label-studio", str(EXPORT), "--catalog", catalog, "--project", "demo", "--config", str(CONFIG)
    )
    assert {d["dataset"]: d["inserted"] for d in first["datasets"]}["demo__annotations"] == 10
    tasks = json.loads(EXPORT.read_text())
    tasks[0]["annotations"][1]["result"][0]["value"]["rectanglelabels"] = ["cyclist"]
    changed = tmp_path_factory.mktemp("exports") / "changed.json"
    changed.write_text(json.dumps(tasks))
    result = lh(
        "ingest", "label-studio", str(changed), "--catalog", catalog, "--project", "demo", "--config", str(CONFIG)
    )
    assert result.exit_code == 0, result.output
    assert "demo__annotations" in result.stdout and "Ingested into demo" in result.stdout
    return catalog


def test_ingest_reports_bad_input_with_exit_1(tmp_path: Path, harness: None) -> None:
    result = lh("ingest", "label-studio", str(FIXTURES / "label_studio_config.xml"), "--catalog", str(tmp_path))
    assert result.exit_code == 1
    assert "invalid JSON" in result.stderr or "not an export" in result.stderr


def test_diff_between_two_ingests(ingested: str) -> None:
    diff = lh_json("diff", "demo__annotations", "1", "2", "--catalog", ingested)
    post = [r for r in diff["rows"] if r["_change_type"] == "update_postimage"]
    assert diff["updated"] == 10  # every row's provenance (source_ref, flow_run_id) changed
    assert ["cyclist"] in [r["labels"] for r in post]
    # A cut-off listing shows whole updates: each pre-image followed by the same row's post-image.
    cut = lh_json("diff", "demo__annotations", "1", "2", "--catalog", ingested, "--limit", "6")["rows"]
    assert [r["_change_type"] for r in cut] == ["update_preimage", "update_postimage"] * 3
    keys = Catalog(ingested).dataset("demo__annotations").primary_keys
    assert all([r[k] for k in keys] == [s[k] for k in keys] for r, s in zip(cut[::2], cut[1::2], strict=True))


def test_history_of_one_row(ingested: str) -> None:
    history = lh_json("history", "demo__annotations", "label-studio:1/annotation:2/bb2", "--catalog", ingested)
    assert [v["labels"] for v in history["versions"]] == [["cyclist"], ["pedestrian"]]
    assert "no row" in lh("history", "demo__annotations", "nope", "--catalog", ingested).stdout


def test_branch_and_merge(ingested: str) -> None:
    branch = lh_json("branch", "demo__items", "review", "--catalog", ingested)
    assert branch["branch"] == "review"
    items = Catalog(ingested).dataset("demo__items")
    assert set(items.branches()) == {"main", "review"}
    items.branch("review").delete(keys=["label-studio:3"])
    merged = lh_json("merge", "demo__items", "review", "--catalog", ingested)
    assert merged["branch"] == "main" and Catalog(ingested).dataset("demo__items").count() == 2
    assert lh("branch", "demo__items", "review", "--catalog", ingested).exit_code == 1  # exists already


@pytest.mark.parametrize("command", [["serve"], ["webhooks", "--secret", "s"]])
def test_long_running_commands_need_a_prefect_server(command: list[str], tmp_path: Path) -> None:
    # A process of its own: in this one the test harness provides an API URL.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"PREFECT_HOME": str(tmp_path)}
    done = subprocess.run([LABELHOUSE, *command, "--catalog", str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "set PREFECT_API_URL" in done.stderr

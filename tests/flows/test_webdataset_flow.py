"""The WebDataset ingest flow end to end on Prefect's test harness: workers write, one commit lands."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from typer.testing import CliRunner

from flows.cli import app
from flows.webdataset import ingest_webdataset
from storage import Catalog, faults

pytestmark = pytest.mark.usefixtures("harness")


def png(width: int, height: int) -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def shards(directory: Path) -> str:
    """Three shards: two of samples (one with a member outside the shard), one empty."""
    directory.mkdir()
    members = [
        [("a.png", png(4, 3)), ("a.cls", b"0"), ("b.png", png(5, 3)), ("b.json", b'{"caption": "b"}')],
        [("c.png", png(6, 3)), ("c.cls", b"1"), ("../escape.png", b"x")],
        [],
    ]
    for n, files in enumerate(members):
        with tarfile.open(directory / f"train-{n:06d}.tar", "w") as archive:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return str(directory / "train-{000000..000002}.tar")


def by_dataset(result: Any) -> dict[str, dict[str, Any]]:
    return {t["dataset"]: t for t in result.record()["datasets"]}


def upserts(catalog: Catalog, dataset: str) -> int:
    return [v["operation"] for v in catalog.dataset(dataset).versions().to_pylist()].count("upsert")


def test_flow_commits_every_shard_once_and_publishes(tmp_path: Path) -> None:
    catalog, pattern = str(tmp_path / "lakehouse"), shards(tmp_path / "shards")
    result = ingest_webdataset(pattern, catalog=catalog, project="wd", workers=2)
    tables = by_dataset(result)
    assert (tables["wd__items"]["inserted"], tables["wd__items"]["rejected"]) == (3, 1)  # 1: the escaping member
    assert tables["wd__components"]["inserted"] == 3
    assert len(result.events) == 2  # items and components changed
    [rejection] = result.record()["rejections"]
    assert rejection["check"] == "source_format" and "outside the shard" in rejection["reason"]
    cat = Catalog(catalog)
    items = cat.dataset("wd__items")
    assert items.snapshot().properties == {"flow_run_id": result.flow_run_id}
    assert str(items.snapshot().idempotency_key).startswith("webdataset:shards:")
    assert (upserts(cat, "wd__items"), upserts(cat, "wd__components")) == (1, 1)
    assert json.loads(cat.dataset("wd__components").take(["webdataset:b/json"], columns=["data"])[0][0].as_py()) == {
        "caption": "b"
    }

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(result.flow_run_id)]))
        )
    kinds = {a.type for a in found}
    assert {"table", "markdown", "progress"} <= kinds
    assert all(a.data == 100.0 for a in found if a.type == "progress")
    report = next(a for a in found if a.key == "wd-ingest-report")
    assert "outside the shard" in str(report.data) and "| wd__components | 0 | 1 | 3 | 0 | 0 |" in str(report.data)

    again = ingest_webdataset(pattern, catalog=catalog, project="wd")
    assert again.events == [] and not any(t["new"] for t in again.record()["datasets"])
    assert (upserts(cat, "wd__items"), upserts(cat, "wd__components")) == (1, 1)


def test_a_flow_retried_after_a_crash_before_the_commit_lands_once(tmp_path: Path) -> None:
    """The items commit crashes between writing its log's files and its log entry three times: the commit
    task's retries give up, the flow is retried, its workers write the shards again, and the commit lands once."""
    catalog = str(tmp_path / "lakehouse")
    crashes: list[str] = []

    def crash_items_commit(name: str) -> None:
        if name == "commit.before_log" and len(crashes) < 3:
            crashes.append(name)
            raise OSError("injected crash between write and commit")

    faults.set_hook(crash_items_commit)
    try:
        result = ingest_webdataset(shards(tmp_path / "shards"), catalog=catalog, project="r")
    finally:
        faults.set_hook(None)
    assert len(crashes) == 3
    cat = Catalog(catalog)
    assert (cat.dataset("r__items").count(), cat.dataset("r__components").count()) == (3, 3)
    assert (upserts(cat, "r__items"), upserts(cat, "r__components")) == (1, 1)
    assert cat.dataset("r__items").snapshot().properties == {"flow_run_id": result.flow_run_id}
    assert cat.dataset("r__items").validate().snapshots == 2  # create + one upsert: no crashed entry


def test_cli_ingests_webdataset_shards(tmp_path: Path) -> None:
    catalog = str(tmp_path / "lakehouse")
    pattern = shards(tmp_path / "shards")
    result = CliRunner().invoke(
        app, ["ingest", "webdataset", pattern, "--catalog", catalog, "--project", "c", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {d["dataset"]: d["inserted"] for d in record["datasets"]}["c__items"] == 3
    missing = CliRunner().invoke(app, ["ingest", "webdataset", str(tmp_path / "nope-{0..1}.tar"), "--catalog", catalog])
    assert missing.exit_code == 1 and "2 shard(s) not found" in missing.stderr


@pytest.mark.slow
def test_flow_on_ray_writes_the_same_rows(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pattern = shards(tmp_path / "shards")
    local = ingest_webdataset(pattern, catalog=str(tmp_path / "a"), project="wd")
    on_ray = ingest_webdataset(pattern, catalog=str(tmp_path / "b"), project="wd", engine="ray", workers=2)
    assert by_dataset(on_ray)["wd__items"]["inserted"] == by_dataset(local)["wd__items"]["inserted"] == 3
    for dataset in ("wd__items", "wd__components"):
        read = [
            Catalog(tmp_path / d).dataset(dataset).read_all(columns=["id", "sha256" if "comp" in dataset else "data"])
            for d in "ab"
        ]
        assert read[0].sort_by("id").equals(read[1].sort_by("id"))

"""Hostile inputs too big for `make test` (the full suite, tests/reliability/run.py, runs them)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hostile import Zeros
from memory import peak_rss_growth
from report import HostileCase, record

from storage import Catalog
from storage.groundtruth import dataset_names
from tasks.commit import commit_changes
from tasks.labelbox.stream import MAX_LINE_BYTES, read_export_file
from tasks.quarantine import rejects_name
from tasks.webdataset import parse_shard
from tasks.webdataset.shard import MAX_MEMBER_BYTES

pytestmark = pytest.mark.reliability


def test_a_2gb_ndjson_line_is_refused_by_the_line_limit_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.ndjson"
    with path.open("wb") as f:
        f.write(json.dumps({"data_row": {"id": "before"}}).encode() + b"\n")
        f.write(b'{"data_row": {"id": "huge", "x": "')
        f.seek(2 << 30, os.SEEK_CUR)  # a sparse hole: 2 GiB of NUL bytes that are never written or held
        f.write(b'"}}\n')
        f.write(json.dumps({"data_row": {"id": "after"}}).encode() + b"\n")
    assert path.stat().st_size > 2 << 30
    growth, chunks = peak_rss_growth(lambda: list(read_export_file(path)))
    assert isinstance(chunks, list), chunks
    [chunk] = chunks
    assert chunk.changes.items["source_id"].to_pylist() == ["before", "after"]
    [reject] = chunk.rejects
    assert reject.source_pointer == "/1" and "line 2" in reject.reason and "over the limit" in reject.reason
    assert len(reject.text) <= 200
    assert growth < 2 * MAX_LINE_BYTES + (64 << 20), f"peak RSS grew {growth >> 20} MiB"

    catalog = Catalog(str(tmp_path / "lake"))
    outcome = commit_changes(
        catalog, "p", chunk.changes, idempotency_key=chunk.idempotency_key, source_rejects=chunk.rejects
    )
    assert outcome.committed_rows == 2 and outcome.source_rejects == 1
    rejects = catalog.dataset(rejects_name(dataset_names("p")["items"]))
    rejects.validate()
    assert "line 2" in rejects.read_all()["reason"].to_pylist()[0]
    record("hostile", HostileCase(
        "NDJSON with a 2 GiB line (sparse file)",
        f"line 2 rejected by the {MAX_LINE_BYTES >> 20} MiB line limit, lines 1 and 3 ingested, "
        f"peak RSS +{growth >> 20} MiB", True,
    ))  # fmt: skip


def test_a_gzip_shard_member_over_the_real_limit_is_rejected_with_bounded_memory(tmp_path: Path) -> None:
    size = MAX_MEMBER_BYTES + (1 << 20)
    path = tmp_path / "bomb-000000.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("000001.bin")
        info.size = size
        archive.addfile(info, Zeros(size))
        ok = tarfile.TarInfo("000002.txt")
        ok.size = 2
        archive.addfile(ok, io.BytesIO(b"ok"))
    growth, parsed = peak_rss_growth(lambda: parse_shard(path))
    assert not isinstance(parsed, BaseException), parsed
    assert parsed.items["source_id"].to_pylist() == ["000002"] and len(parsed.rejects) == 1
    assert growth < 128 << 20, f"peak RSS grew {growth >> 20} MiB"
    record("hostile", HostileCase(
        f"gzip shard: a {size >> 20} MiB member in {path.stat().st_size >> 10} KiB",
        f"member rejected by the {MAX_MEMBER_BYTES >> 20} MiB member limit, peak RSS +{growth >> 20} MiB", True,
    ))  # fmt: skip

"""Explicit hostile inputs (fast; `make test` runs them): deep nesting, path traversal in tars and names,
links and devices, decompression bombs, hostile dataset names, keys and S3 object keys.

Each case is recorded for the reliability table's "Hostile input" section (report.HostileCase).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hostile import HOSTILE_TEXT, Zeros
from hypothesis import given, settings
from hypothesis import strategies as st
from memory import peak_rss_growth
from report import HostileCase, record

from flows.webhooks import PATH, SECRET_HEADER, create_app
from storage import Catalog, InvalidNameError
from storage.groundtruth import dataset_names
from tasks.coco.parse import parse_coco
from tasks.commit import SOURCE_FORMAT_CHECK
from tasks.embeddings import decode_png
from tasks.errors import SourceError, SourceFormatError
from tasks.label_studio.config import parse_labeling_config
from tasks.label_studio.export import parse_export
from tasks.label_studio.webhooks import map_webhook
from tasks.labelbox.stream import iter_export
from tasks.quarantine import rejects_name
from tasks.s3_bucket import S3Options, ingest_prefix
from tasks.webdataset import parse_shard
from tasks.webdataset.ingest import ingest_shards

DEEP = 100_000


def note(case: str, outcome: str, passed: bool = True) -> None:
    record("hostile", HostileCase(case=case, outcome=outcome.splitlines()[0][:160], passed=passed))


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def png_header(width: int, height: int, idat: bytes = b"") -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + (chunk(b"IDAT", idat) if idat else b"") + chunk(b"IEND", b"")


# ----- 100,000 levels of nesting ---------------------------------------------------------------------------


def deep_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("parser", ["label-studio export", "COCO", "labelbox NDJSON", "webhook", "labeling config"])
def test_a_100000_level_nested_input_is_a_clear_error(parser: str) -> None:
    text = "[" * DEEP + "]" * DEEP
    if parser == "label-studio export":
        with pytest.raises(SourceFormatError, match="nested"):
            parse_export(text)
        outcome = "SourceFormatError: nested too deeply"
    elif parser == "COCO":
        with pytest.raises(SourceFormatError, match="nested"):
            parse_coco(text.encode())
        outcome = "SourceFormatError: nested too deeply"
    elif parser == "labelbox NDJSON":
        line = json.dumps({"data_row": {"id": "ok"}}).encode()
        [chunk] = iter_export([line, text.encode(), line[:-1] + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}"])
        assert [r.source_pointer for r in chunk.rejects] == ["/1", "/2"]
        assert all("nested" in r.reason and f"line {i}" in r.reason for r, i in zip(chunk.rejects, (2, 3), strict=True))
        assert chunk.changes.items["source_id"].to_pylist() == ["ok"]
        outcome = f"lines 2, 3 rejected ({chunk.rejects[0].reason[:60]}...); line 1 ingested"
    elif parser == "webhook":
        with pytest.raises(SourceFormatError, match="nested"):
            map_webhook({"action": "TASKS_CREATED", "tasks": [{"id": 1, "data": {"x": deep_list(DEEP)}}]})
        emitted: list[Any] = []
        app = create_app(secret="s", catalog="/nowhere", project="p", emit=lambda *a: emitted.append(a))
        with TestClient(app) as client:
            response = client.post(PATH, content=text, headers={SECRET_HEADER: "s", "content-type": "application/json"})
        assert response.status_code == 400 and "nested" in response.json()["detail"] and not emitted
        outcome = "mapping: SourceFormatError; receiver: 400, nothing emitted"
    else:
        xml = "<View>" + "<View>" * DEEP + "</View>" * DEEP + "</View>"
        try:
            config = parse_labeling_config(xml)
            outcome = f"parsed ({len(config.controls)} controls): expat and iter() do not recurse"
        except SourceError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
    note(f"{DEEP:,}-level nested input: {parser}", outcome)


def test_an_entity_expansion_bomb_in_a_labeling_config_is_refused() -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY l0 "lol">{lol}]><View><Text name="t" value="&l9;"/></View>'
    with pytest.raises(SourceError) as caught:
        parse_labeling_config(xml)
    note("labeling config: billion laughs entity bomb", f"{type(caught.value).__name__}: {caught.value}")


# ----- tar members: traversal, links, devices ---------------------------------------------------------------


def write_hostile_shard(path: Path) -> Path:
    with tarfile.open(path, "w") as archive:

        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if info.size else None)

        add("000001.jpg", data=b"\xff\xd8\xff\xe0ok")
        add("../../escaped.jpg")
        add("/tmp/absolute.jpg")
        add("a/../../up.cls")
        add("000002.jpg", tarfile.SYMTYPE, link="/etc/passwd")
        add("000003.jpg", tarfile.LNKTYPE, link="../../escaped.jpg")
        add("000004.jpg", tarfile.CHRTYPE)
        add("000005.jpg", tarfile.BLKTYPE)
        add("000006.jpg", tarfile.FIFOTYPE)
        add("000007.png", data=png_header(100_000, 100_000))  # a size bomb header, never decoded
    return path


def test_tar_traversal_links_and_devices_are_rejected_and_nothing_is_written_outside(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    shard = write_hostile_shard(shards / "hostile-000000.tar")
    before = files_under(tmp_path)
    parsed = parse_shard(shard)
    reasons = {r.source_pointer: r.reason for r in parsed.rejects}
    assert len(reasons) == 8, reasons
    assert all("outside the shard" in reasons[p] for p in ("/..~1..~1escaped.jpg", "/~1tmp~1absolute.jpg"))
    assert "a link" in reasons["/000002.jpg"] and "a link" in reasons["/000003.jpg"]
    assert all("not a regular file" in reasons[f"/00000{i}.jpg"] for i in (4, 5, 6))
    assert parsed.items["source_id"].to_pylist() == ["000001", "000007"]
    assert parsed.items["width"].to_pylist()[1] == 100_000  # read from the header; nothing decoded

    catalog = Catalog(str(tmp_path / "lake"))
    outcome = ingest_shards(catalog, "p", [str(shard)]).outcome
    assert outcome.committed_rows == 2 and outcome.source_rejects == 8
    rejects = catalog.dataset(rejects_name(dataset_names("p")["items"])).read_all().to_pylist()
    assert {r["check"] for r in rejects} == {SOURCE_FORMAT_CHECK} and len(rejects) == 8
    for name in catalog.datasets():
        catalog.dataset(name).validate()
    new = files_under(tmp_path) - before
    assert new and all(p == "lake" or p.startswith("lake/") for p in new), sorted(new)[:5]
    assert not (tmp_path.parent / "escaped.jpg").exists() and not Path("/tmp/absolute.jpg").exists()
    note("tar: ../../x, /abs, a/../../x, symlink, hardlink, char/block device, fifo", "8 members rejected "
         "with reasons, 2 samples ingested, nothing written outside the catalog")  # fmt: skip


# ----- decompression bombs -----------------------------------------------------------------------------------


def test_a_png_header_claiming_100000_by_100000_is_not_decoded() -> None:
    small = png_header(100_000, 100_000, zlib.compress(b"\x00" * 1000))
    growth, error = peak_rss_growth(lambda: decode_png(small))
    assert error is not None and isinstance(error, ValueError) and growth < 64 << 20
    note("PNG header claiming 100000x100000 (embedding decoder)", f"ValueError, peak RSS +{growth >> 20} MiB")


def test_a_png_whose_data_inflates_past_its_header_is_refused_with_bounded_memory() -> None:
    bomb = png_header(10, 10, zlib.compress(bytes(512 << 20), 1))  # 512 MiB of zeros in ~2 MiB
    growth, error = peak_rss_growth(lambda: decode_png(bomb))
    assert isinstance(error, ValueError), error
    assert growth < 64 << 20, f"peak RSS grew {growth >> 20} MiB"
    note("PNG IDAT inflating to 512 MiB (embedding decoder)", f"ValueError, peak RSS +{growth >> 20} MiB")


def test_a_gzip_shard_that_inflates_hugely_is_rejected_with_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.webdataset.shard as shard_module

    monkeypatch.setattr(shard_module, "MAX_MEMBER_BYTES", 16 << 20)  # the real limit is 512 MiB: keep it quick
    size = 256 << 20  # a 256 MiB member in a ~250 KiB .tar.gz
    path = tmp_path / "bomb-000000.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w") as archive:
        ok = tarfile.TarInfo("000001.txt")
        ok.size = 2
        archive.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo("000002.bin")
        info.size = size
        archive.addfile(info, Zeros(size))
    assert path.stat().st_size < 4 << 20
    growth, parsed = peak_rss_growth(lambda: parse_shard(path))
    assert not isinstance(parsed, BaseException), parsed
    assert parsed.items["source_id"].to_pylist() == ["000001"]
    assert len(parsed.rejects) == 1 and "000002.bin" in parsed.rejects[0].reason
    assert growth < 64 << 20, f"peak RSS grew {growth >> 20} MiB"
    note("gzip shard: a member inflating to 256 MiB", f"member rejected ({parsed.rejects[0].reason[:70]}...), "
         f"peak RSS +{growth >> 20} MiB")  # fmt: skip


# ----- names, keys and object keys --------------------------------------------------------------------------

HOSTILE_NAMES = [
    "..", "../x", "../../etc", "/abs", "/", "a/b", "a\\b", "a\x00b", "\x00", "", ".", ".hidden", "-x", "abc\n",
    "x" * 129, "é" * 300, "🚲", "_catalog", "_trash", "a..b", " x", "x ", "C:", "%2e%2e",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_dataset_tag_and_branch_names_are_refused_inside_the_root(tmp_path: Path, name: str) -> None:
    schema = pa.schema([pa.field("id", pa.string(), nullable=False)])
    catalog = Catalog(str(tmp_path / "lake"))
    ds = catalog.create_dataset("ok", schema, ["id"])
    before = files_under(tmp_path)
    for attempt in (
        lambda: catalog.create_dataset(name, schema, ["id"]),
        lambda: catalog.dataset(name),
        lambda: catalog.drop(name),
        lambda: ds.tag(name),
        lambda: ds.create_branch(name),
    ):
        with pytest.raises(InvalidNameError, match="invalid"):
            attempt()
    assert files_under(tmp_path) == before
    assert catalog.datasets() == ["ok"]


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.one_of(st.text(max_size=140), st.sampled_from(HOSTILE_TEXT + HOSTILE_NAMES)))
def test_fuzzed_names_are_created_inside_the_root_or_refused(name: str) -> None:
    import tempfile

    schema = pa.schema([pa.field("id", pa.string(), nullable=False)])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        try:
            Catalog(str(root)).create_dataset(name, schema, ["id"])
        except InvalidNameError as exc:
            assert str(exc)
        else:
            assert (root / name).resolve().parent == root.resolve()
        assert os.listdir(tmp) == ["lake"] or not os.listdir(tmp)


KEYS = ["../../x", "/etc/passwd", "a\x00b", "..", "\\..\\x", "é" * 5000, "🚲" * 1000, "", " ", "a/b/../c"]


def test_hostile_primary_keys_and_blobs_stay_data(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("blob", pa.binary())])
    catalog = Catalog(str(tmp_path / "lake"))
    ds = catalog.create_dataset("keys", schema, ["id"], ["blob"])
    ds.append(pa.table({"id": KEYS, "blob": [k.encode("utf-8") for k in KEYS]}, schema=schema))
    fresh = Catalog(str(tmp_path / "lake")).dataset("keys")
    fresh.validate()
    got = fresh.take(KEYS, columns=["id", "blob"])
    assert sorted(got["id"].to_pylist()) == sorted(KEYS)
    assert all(row["blob"] == row["id"].encode("utf-8") for row in got.to_pylist())
    assert all(p.startswith("lake") for p in files_under(tmp_path))
    note("primary keys and blobs: ../../x, /etc/passwd, NUL, 5000 x é", "stored and read back as data; no path")


S3_KEYS = [
    "frames/a b.txt", "frames/ü/ñ.txt", "frames/a+b%2F.txt", "frames/../../x.txt", "frames//double.txt",
    "frames/q?x#y.txt", "frames/日本/🚲.txt", "frames/" + "é" * 200 + ".txt", "frames/\\..\\win.txt",
    "frames/./dot.txt", "frames/~1.txt", "frames/tab\there.txt",
]  # fmt: skip


def test_s3_keys_with_special_characters_are_ingested_as_data(moto_s3: Any, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    client = moto_s3.client()
    for key in S3_KEYS:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode("utf-8"))
    options = S3Options(
        endpoint_url=moto_s3.endpoint_url, region="us-east-1", access_key="testing", secret_key="testing"
    )
    catalog = Catalog(str(tmp_path / "lake"))
    run = ingest_prefix(catalog, "bkt", bucket, "frames/", options=options)
    assert run.new == len(S3_KEYS)
    items = catalog.dataset(dataset_names("bkt")["items"])
    items.validate()
    rows = items.read_all(columns=["id", "uri", "blob"]).to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(f"s3:{bucket}/{k}" for k in S3_KEYS)
    assert all(r["blob"] == r["uri"].split(f"s3://{bucket}/", 1)[1].encode("utf-8") for r in rows)
    assert all(p.startswith("lake") for p in files_under(tmp_path))
    note("S3 keys: spaces, ../, //, ?#, unicode, 200 x é, backslashes", f"{len(rows)} objects ingested as data")


def test_a_coco_file_name_leaving_the_image_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    doc = {"images": [{"id": 1, "file_name": "../secret.jpg"}], "annotations": [], "categories": []}
    with pytest.raises(SourceError, match="outside the image directory"):
        parse_coco(json.dumps(doc), image_dir=tmp_path / "images")
    note("COCO file_name ../secret.jpg with an image directory", "SourceError: points outside the image directory")

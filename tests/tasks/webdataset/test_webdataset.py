"""WebDataset shards: key/extension rules, shard metadata, unsafe members, empty shards, one commit."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from storage import Catalog
from storage.groundtruth import dataset_names, ensure_groundtruth
from tasks.errors import BatchRejectedError, SourceError
from tasks.quarantine import rejects_name
from tasks.s3_bucket import S3Options
from tasks.webdataset import components_name, ensure_components, expand_pattern, parse_shard, worker
from tasks.webdataset.ingest import ingest_shards

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "webdataset" / "webdataset-000000.tar"


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def write_shard(path: Path, members: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return path


def test_fixture_shard_groups_samples_by_key():
    shard = parse_shard(FIXTURE)
    assert shard.rejects == []
    assert shard.metadata == {"__meta__": b"ignored-by-webdataset-readers"}
    assert shard.items["id"].to_pylist() == ["webdataset:000001", "webdataset:000002", "webdataset:cam1/000003"]
    assert shard.items["blob"].to_pylist()[0] == b"\xff\xd8\xff\xe0fake-jpeg-1"
    assert sorted(shard.components["id"].to_pylist()) == [
        "webdataset:000001/cls",
        "webdataset:000001/json",
        "webdataset:cam1/000003/json",
        "webdataset:cam1/000003/seg.png",
    ]
    data = json.loads(shard.items["data"].to_pylist()[2])
    assert data["__key__"] == "cam1/000003" and data["main"] == "jpg"
    assert data["values"]["json"] == {"caption": "東京 🚲"}
    assert data["components"]["seg.png"]["content_type"] == "image/png"
    assert shard.items["source_pointer"].to_pylist()[2] == "/cam1~1000003"


def test_brace_patterns():
    assert expand_pattern("train-{000008..000011}.tar") == [f"train-0000{n:02d}.tar" for n in range(8, 12)]
    assert expand_pattern("{a,b}/s-{1..2}.tar") == ["a/s-1.tar", "a/s-2.tar", "b/s-1.tar", "b/s-2.tar"]
    assert expand_pattern("plain.tar") == ["plain.tar"]
    for bad, message in (("s-{3..1}.tar", "backwards"), ("s-{x}.tar", "neither"), ("s-{1..2.tar", "unbalanced")):
        with pytest.raises(SourceError, match=message):
            expand_pattern(bad)


def test_unsafe_and_misplaced_members_are_rejected(tmp_path):
    shard = write_shard(
        tmp_path / "bad.tar",
        [
            ("a.png", png(4, 3)),
            ("a.cls", b"1"),
            ("../escape.jpg", b"x"),
            ("/abs/path.jpg", b"x"),
            ("noext", b"x"),
            ("b.jpg", b"x"),
            ("a.txt", b"again"),  # key `a` comes back after `b`
            ("b.jpg", b"y"),  # a second jpg in sample `b`
        ],
        links=("c.jpg",),
    )
    parsed = parse_shard(shard)
    assert parsed.items["id"].to_pylist() == ["webdataset:a", "webdataset:b"]
    assert parsed.items.select(["width", "height"]).to_pylist()[0] == {"width": 4, "height": 3}
    reasons = [r.reason for r in parsed.rejects]
    assert len(reasons) == 6
    assert sum("outside the shard" in r for r in reasons) == 2
    assert any("no extension" in r for r in reasons)
    assert any("appeared earlier" in r for r in reasons)
    assert any("already has a jpg" in r for r in reasons)
    assert any("is a link" in r for r in reasons)


def test_empty_and_broken_shards(tmp_path):
    (tmp_path / "empty-0.tar").write_bytes(b"")
    write_shard(tmp_path / "empty-1.tar", [])
    (tmp_path / "broken.tar").write_bytes(b"not a tar at all" * 100)
    assert parse_shard(tmp_path / "empty-0.tar").items.num_rows == 0
    assert parse_shard(tmp_path / "empty-1.tar").items.num_rows == 0
    broken = parse_shard(tmp_path / "broken.tar")
    assert broken.items.num_rows == 0 and "not a readable tar archive" in broken.rejects[0].reason


def _shards(tmp_path: Path) -> str:
    for n in range(3):
        write_shard(
            tmp_path / f"train-{n:06d}.tar",
            [(f"s{n}0.png", png(10, 20)), (f"s{n}0.cls", str(n).encode()), (f"s{n}1.png", png(11, 20))],
        )
    write_shard(tmp_path / "train-000003.tar", [])  # an empty shard
    return str(tmp_path / "train-{000000..000003}.tar")


def test_ingest_commits_all_shards_once_and_is_idempotent(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    pattern = _shards(tmp_path)
    result = ingest_shards(catalog, "wd", pattern, workers=2)
    assert (result.shards, result.samples, result.outcome.tables["items"].good_rows) == (4, 6, 6)
    items = catalog.dataset(dataset_names("wd")["items"])
    assert items.versions().num_rows == 2  # created, then one commit for every shard
    row = items.take(["webdataset:s11"], columns=["width", "height", "blob"]).to_pylist()[0]
    assert (row["width"], row["height"], row["blob"]) == (11, 20, png(11, 20))
    component = catalog.dataset(components_name("wd")).take(["webdataset:s20/cls"], columns=["data", "item_id"])
    assert component.to_pylist() == [{"data": b"2", "item_id": "webdataset:s20"}]
    again = ingest_shards(catalog, "wd", pattern)
    assert again.outcome.tables["items"].committed == result.outcome.tables["items"].committed
    assert items.versions().num_rows == 2
    with pytest.raises(SourceError, match="not found"):
        ingest_shards(catalog, "wd", str(tmp_path / "train-{000000..000009}.tar"))


def test_bad_members_are_quarantined(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    write_shard(tmp_path / "x-0.tar", [(f"k{i}.png", png(2, 2)) for i in range(20)] + [("../up.png", b"x")])
    result = ingest_shards(catalog, "wd", str(tmp_path / "x-0.tar"))
    assert (result.samples, result.outcome.source_rejects) == (20, 1)
    (reject,) = catalog.dataset(rejects_name(dataset_names("wd")["items"])).read_all().to_pylist()
    assert reject["source_pointer"] == "/..~1up.png" and "outside the shard" in reject["reason"]


def test_paths_are_accepted_as_well_as_strings(tmp_path):
    write_shard(tmp_path / "p-0.tar", [("a.png", png(2, 2))])
    write_shard(tmp_path / "p-1.tar", [("b.png", png(2, 2))])
    one = ingest_shards(Catalog(tmp_path / "a"), "wd", tmp_path / "p-0.tar")
    both = ingest_shards(Catalog(tmp_path / "b"), "wd", [tmp_path / "p-0.tar", tmp_path / "p-1.tar"])
    assert (one.samples, both.samples) == (1, 2)


@pytest.mark.slow
def test_ray_engine_gives_the_same_rows(tmp_path):
    pytest.importorskip("ray")
    pattern = _shards(tmp_path)
    local = ingest_shards(Catalog(tmp_path / "a"), "wd", pattern)
    on_ray = ingest_shards(Catalog(tmp_path / "b"), "wd", pattern, engine="ray", workers=2)
    assert (on_ray.samples, on_ray.shards) == (local.samples, local.shards)
    read = [Catalog(tmp_path / d).dataset("wd__items").read_all(columns=["id", "data"]).sort_by("id") for d in "ab"]
    assert read[0].equals(read[1])


def test_a_header_beyond_int32_leaves_the_size_unknown(tmp_path):
    shard = write_shard(tmp_path / "wide.tar", [("wide.png", png(2**31, 1)), ("ok.png", png(2, 2))])
    parsed = parse_shard(shard)
    assert parsed.items.select(["id", "width", "height"]).to_pylist() == [
        {"id": "webdataset:wide", "width": None, "height": 1},
        {"id": "webdataset:ok", "width": 2, "height": 2},
    ]


def test_a_worker_writes_passing_samples_without_committing(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    shard = write_shard(
        tmp_path / "w-0.tar",
        [("a.png", png(3, 2)), ("a.cls", b"1"), ("dup.png", png(1, 1)), ("dup.cls", b"2"), ("b.txt", b"text")],
    )
    items, components = ensure_groundtruth(catalog, "wd").items, ensure_components(catalog, "wd")
    written = worker.write_shard(catalog, "wd", str(shard), duplicates={"webdataset:dup": "dup is elsewhere too"})
    files = pickle.loads(pickle.dumps(written))  # what a Ray task hands back
    assert files.keys == ["webdataset:a", "webdataset:dup", "webdataset:b"]
    assert (items.versions().num_rows, items.count()) == (1, 0)  # data files written, nothing committed
    [failing] = files.report.failing_rows
    assert (failing.key, failing.reasons) == ("webdataset:dup", (("unique_primary_key", "dup is elsewhere too"),))
    assert not files.report.result("unique_primary_key").passed
    assert files.rejected["row_key"].to_pylist() == ["webdataset:dup"]
    assert sum(f["rows"] for f in files.items) == 2  # a and b; the failing sample's row is in no file
    assert sum(f["rows"] for f in files.components) == 1  # a.cls; dup.cls belongs to a failing sample
    items.commit_files(files.items, idempotency_key="k")
    components.commit_files(files.components, idempotency_key="k")
    assert sorted(items.read_all(columns=["id"])["id"].to_pylist()) == ["webdataset:a", "webdataset:b"]
    assert components.read_all(columns=["id"])["id"].to_pylist() == ["webdataset:a/cls"]


def _shared_key_shards(tmp_path: Path) -> str:
    write_shard(tmp_path / "d-0.tar", [("same.png", png(2, 2)), ("same.cls", b"0"), ("x.png", png(2, 2))])
    write_shard(tmp_path / "d-1.tar", [("same.png", png(3, 3)), ("y.png", png(2, 2)), ("z.png", png(2, 2))])
    return str(tmp_path / "d-{0..1}.tar")


def test_a_key_in_two_shards_is_quarantined_in_both(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    result = ingest_shards(catalog, "wd", _shared_key_shards(tmp_path), workers=2, max_failure_rate=0.5)
    assert (result.samples, result.outcome.rejected_rows) == (5, 2)
    items = catalog.dataset(dataset_names("wd")["items"])
    assert sorted(items.read_all(columns=["id"])["id"].to_pylist()) == ["webdataset:x", "webdataset:y", "webdataset:z"]
    assert [v["operation"] for v in items.versions().to_pylist()] == ["create", "upsert"]
    rejects = catalog.dataset(rejects_name(items.name)).read_all().to_pylist()
    assert [r["check"] for r in rejects] == ["unique_primary_key"] * 2
    assert "appears in 2 shards (d-0.tar, d-1.tar)" in rejects[0]["reason"]
    assert catalog.dataset(components_name("wd")).count() == 0  # same.cls went with its sample


def test_too_many_failing_samples_commit_nothing(tmp_path):
    catalog = Catalog(tmp_path / "lake")
    with pytest.raises(BatchRejectedError, match="nothing was written"):
        ingest_shards(catalog, "wd", _shared_key_shards(tmp_path))  # 2 of 5 samples fail, above 10%
    assert catalog.dataset(dataset_names("wd")["items"]).count() == 0
    assert catalog.dataset(components_name("wd")).versions().num_rows == 1  # created, nothing committed


def test_shards_on_s3(tmp_path, moto_s3):
    bucket = moto_s3.new_bucket()
    client = moto_s3.client()
    for n in range(2):
        shard = write_shard(tmp_path / f"s-{n}.tar", [(f"s{n}.png", png(5, 4)), (f"s{n}.cls", str(n).encode())])
        client.put_object(Bucket=bucket, Key=f"shards/train-{n:03d}.tar", Body=shard.read_bytes())
    client.put_object(Bucket=bucket, Key="shards/train-002.tar", Body=b"")  # an empty shard
    s3 = S3Options(**moto_s3.options)
    catalog = Catalog(tmp_path / "lake")
    pattern = f"s3://{bucket}/shards/train-{{000..002}}.tar"
    result = ingest_shards(catalog, "wd", pattern, s3=s3, workers=2)
    assert (result.shards, result.samples, result.bytes_read) == (3, 2, sum(len(b) for b in _bodies(client, bucket)))
    row = catalog.dataset("wd__items").take(["webdataset:s1"], columns=["width", "source_ref", "data"]).to_pylist()[0]
    assert row["width"] == 5 and row["source_ref"].startswith("train-001.tar@sha256:")
    assert json.loads(row["data"])["__url__"] == "train-001.tar"
    assert catalog.dataset(components_name("wd")).count() == 2
    assert ingest_shards(catalog, "wd", pattern, s3=s3).idempotency_key == result.idempotency_key
    assert catalog.dataset("wd__items").versions().num_rows == 2  # created, one commit
    with pytest.raises(SourceError, match=r"1 shard\(s\) not found.*train-003"):
        ingest_shards(catalog, "wd", f"s3://{bucket}/shards/train-{{002..003}}.tar", s3=s3)


def _bodies(client, bucket):
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    return [client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed]

"""Conversions: to Hugging Face, Ray and PyTorch, and imports from Hugging Face and Parquet directories."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage import Catalog, Dataset, DatasetNotFoundError, InvalidInputError, StorageError, WriteOptions

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("image", pa.binary()),
        pa.field("embedding", pa.list_(pa.float32())),
    ]
)
BIG = 20 << 20


def source_rows() -> pa.Table:
    """Ids 0-39; ids 0-2 carry blobs of 0 bytes, 1 byte and 20 MB; id 9's fields are null."""
    images: list[bytes | None] = [b"", b"\x01", b"\x02" * BIG] + [bytes([i]) * i for i in range(3, 40)]
    images[9] = None
    return pa.table(
        {
            "id": list(range(40)),
            "label": [None if i == 9 else f"label-{i % 3}" for i in range(40)],
            "image": images,
            "embedding": [None if i == 9 else [float(i), -1.0] for i in range(40)],
        },
        schema=SCHEMA,
    )


@pytest.fixture
def frames(catalog: Catalog) -> Dataset:
    """source_rows() in files of 16 rows, then id 20 deleted and id 21 relabelled."""
    ds = catalog.create_dataset(
        "frames", SCHEMA, ["id"], record_fields=["image", "embedding"], options=WriteOptions(max_rows_per_file=16)
    )
    ds.append(source_rows())
    ds.delete(keys=[20])
    ds.upsert(source_rows().slice(21, 1).set_column(1, "label", pa.array(["relabelled"])))
    return ds


def expected(ds: Dataset) -> list[dict[str, Any]]:
    return ds.read_all(columns=SCHEMA.names).sort_by("id").to_pylist()


def test_to_huggingface_holds_every_column_blobs_included(frames: Dataset, tmp_path: Path) -> None:
    hf = frames.to_huggingface(cache_dir=str(tmp_path / "hf"))
    table = hf.data.table
    assert table.schema.names == SCHEMA.names
    assert [f.type for f in table.schema] == [f.type for f in SCHEMA]
    assert table.sort_by("id").to_pylist() == expected(frames)
    by_id = {row["id"]: row for row in hf}
    assert (by_id[0]["image"], by_id[1]["image"], by_id[2]["image"]) == (b"", b"\x01", b"\x02" * BIG)
    assert 20 not in by_id and by_id[21]["label"] == "relabelled"
    again = frames.to_huggingface(cache_dir=str(tmp_path / "hf"))
    assert again.cache_files == hf.cache_files  # a snapshot is written once
    old = frames.to_huggingface(version=1, cache_dir=str(tmp_path / "hf"))
    assert old.num_rows == 40 and old.cache_files != hf.cache_files


def test_from_huggingface_round_trips_and_honours_selections(frames: Dataset, catalog: Catalog, tmp_path: Path) -> None:
    hf = frames.to_huggingface(cache_dir=str(tmp_path / "hf"))
    copy = catalog.from_huggingface("copy", hf, ["id"], record_fields=["image", "embedding"])
    assert copy.record_fields == ["image", "embedding"]
    assert expected(copy) == expected(frames)
    picked = catalog.from_huggingface("picked", hf.shuffle(seed=1).select(range(5)), ["id"])
    assert picked.count() == 5
    assert expected(picked) == [r for r in expected(frames) if r["id"] in {r["id"] for r in expected(picked)}]


def test_from_huggingface_refuses_a_dataset_dict(catalog: Catalog) -> None:
    datasets = pytest.importorskip("datasets")
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"id": [1]})})
    with pytest.raises(InvalidInputError, match="pick a split"):
        catalog.from_huggingface("x", splits, ["id"])


def test_from_parquet_streams_a_directory_of_files(catalog: Catalog, tmp_path: Path) -> None:
    directory = tmp_path / "export"
    directory.mkdir()
    rows = source_rows()
    for k, start in enumerate(range(0, 40, 15)):
        pq.write_table(rows.slice(start, 15), directory / f"part-{k}.parquet")
    ds = catalog.from_parquet("imported", directory, ["id"], record_fields=["image"])
    assert ds.record_fields == ["image"]
    assert ds.read_all(columns=SCHEMA.names).sort_by("id").to_pylist() == rows.to_pylist()
    assert len(ds.versions()) == 2  # create, then one snapshot for the whole import


def test_a_failed_import_leaves_no_dataset(catalog: Catalog, tmp_path: Path) -> None:
    directory = tmp_path / "dups"
    directory.mkdir()
    pq.write_table(pa.table({"id": [1, 2]}), directory / "a.parquet")
    pq.write_table(pa.table({"id": [2, 3]}), directory / "b.parquet")
    with pytest.raises(InvalidInputError, match="more than once"):
        catalog.from_parquet("dups", directory, ["id"])
    assert "dups" not in catalog.datasets()
    with pytest.raises(InvalidInputError, match="cannot read Parquet"):
        catalog.from_parquet("missing", tmp_path / "nowhere", ["id"])
    with pytest.raises(DatasetNotFoundError):
        catalog.dataset("missing")


def label_length(row: dict[str, Any]) -> dict[str, Any]:
    # Numbers only: default_collate cannot batch the null labels.
    return {"id": row["id"], "label_length": len(row["label"] or "")}


def test_to_torch_is_a_torch_dataset_over_random_access(frames: Dataset) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    ds = frames.to_torch(columns=["id", "label"], transform=label_length)
    assert isinstance(ds, torch_data.Dataset)
    assert len(ds) == frames.count()
    loader = torch_data.DataLoader(ds, batch_size=8, shuffle=True)
    seen = [(int(i), int(n)) for batch in loader for i, n in zip(batch["id"], batch["label_length"], strict=True)]
    assert sorted(seen) == sorted((r["id"], len(r["label"] or "")) for r in expected(frames))


def test_a_missing_extra_is_named(frames: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(StorageError, match=r"pip install 'labelhouse\[hf\]'"):
        frames.to_huggingface()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated settings
def test_to_ray_reads_every_file_with_deletions_and_records(frames: Dataset, ray_local: Any) -> None:
    table = pa.concat_tables(ray_local.get(frames.to_ray().to_arrow_refs()))
    assert table.sort_by("id").to_pylist() == expected(frames)
    only_ids = frames.to_ray(columns=["id"], version=1).take_all()
    assert sorted(r["id"] for r in only_ids) == list(range(40))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated settings
def test_to_ray_of_an_empty_dataset_is_empty(catalog: Catalog, ray_local: Any) -> None:
    ds = catalog.create_dataset("empty", SCHEMA, ["id"], record_fields=["image"])
    assert ds.to_ray().count() == 0

"""ds.random_access(): rows by index over a pinned snapshot, for PyTorch DataLoaders and Grain."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from storage import Catalog, Dataset, InvalidInputError, WriteOptions
from tests.fresh_process import in_fresh_process

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("image", pa.binary()),
        pa.field("embedding", pa.list_(pa.float32())),
    ]
)
BLOB_SIZES = {1: 0, 2: 1, 3: 20 << 20}  # id -> blob size: empty, one byte, 20 MB


def blob(i: int, size: int | None = None) -> bytes:
    return bytes([i % 251]) * (size if size is not None else i % 7)


def rows(ids: range | list[int], tag: str = "v1") -> pa.Table:
    ids = list(ids)
    return pa.Table.from_pylist(
        [
            {
                "id": i,
                "label": f"{tag}-{i}",
                "image": None if i % 10 == 5 else blob(i, BLOB_SIZES.get(i)),
                "embedding": [float(i), 0.5],
            }
            for i in ids
        ],
        schema=SCHEMA,
    )


@pytest.fixture
def frames(catalog: Catalog) -> Dataset:
    """Ids 0-299 in files of 64 rows (row groups of 16), ids 100-149 then deleted, ids 0-9 upserted."""
    options = WriteOptions(max_rows_per_file=64, row_group_size=16)
    ds = catalog.create_dataset("frames", SCHEMA, ["id"], record_fields=["image", "embedding"], options=options)
    ds.append(rows(range(300)))
    ds.delete(keys=list(range(100, 150)))
    ds.upsert(rows(range(10), tag="v2"))
    return ds


def by_id(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["id"])


def test_rows_are_the_live_rows_of_the_version(frames: Dataset) -> None:
    ra = frames.random_access()
    expected = frames.read_all(columns=SCHEMA.names).to_pylist()
    assert len(ra) == frames.count() == 250
    got = [ra[i] for i in range(len(ra))]
    assert by_id(got) == by_id(expected)
    assert ra.__getitems__(list(range(len(ra)))) == got
    assert list(got[0]) == SCHEMA.names


def test_batches_keep_the_order_asked_for_across_files_and_row_groups(frames: Dataset) -> None:
    ra = frames.random_access()
    order = np.random.default_rng(0).permutation(len(ra)).tolist()
    assert ra.__getitems__(order + order[:5]) == [ra[i] for i in order + order[:5]]
    assert ra.__getitems__([]) == []
    assert ra.table([3, 1]).to_pylist() == [ra[3], ra[1]]


def test_indices_count_from_the_end_and_stop_at_len(frames: Dataset) -> None:
    ra = frames.random_access(columns=["id"])
    assert ra[-1] == ra[len(ra) - 1]
    assert ra.__getitems__([-1, 0]) == [ra[len(ra) - 1], ra[0]]
    assert [r["id"] for r in ra] == [ra[i]["id"] for i in range(len(ra))]  # iteration ends on IndexError
    with pytest.raises(IndexError):
        ra[len(ra)]
    with pytest.raises(IndexError):
        ra.__getitems__([0, -len(ra) - 1])
    with pytest.raises(InvalidInputError):
        ra["3"]  # type: ignore[index]


def test_columns_pick_and_order_the_keys(frames: Dataset) -> None:
    ra = frames.random_access(columns=["image", "id"])
    row = ra[0]
    assert list(row) == ["image", "id"]
    assert list(ra.__getitems__([0])[0]) == ["image", "id"]
    assert ra.columns == ["image", "id"]
    assert list(frames.random_access(columns=["label"])[0]) == ["label"]
    with pytest.raises(InvalidInputError, match="unknown column"):
        frames.random_access(columns=["nope"])


def test_a_pinned_version_keeps_its_rows_and_order_after_writes(frames: Dataset) -> None:
    pinned = frames.snapshot().id
    ra = frames.random_access(version=pinned)
    before = [ra[i] for i in range(len(ra))]
    frames.delete(keys=list(range(0, 300, 2)))
    frames.upsert(rows(range(290, 400), tag="v3"))
    assert [ra[i] for i in range(len(ra))] == before
    again = frames.random_access(version=pinned)
    assert again.snapshot_id == ra.snapshot_id == pinned
    assert again.__getitems__(list(range(len(again)))) == before
    head = frames.random_access()
    assert len(head) == frames.count()
    assert by_id([head[i] for i in range(len(head))]) == by_id(frames.read_all(columns=SCHEMA.names).to_pylist())


def test_a_pickled_copy_reads_the_same_rows(frames: Dataset) -> None:
    ra = frames.random_access()
    ra[0]  # fill caches, which must not travel
    copy = pickle.loads(pickle.dumps(ra))
    assert copy.__getitems__(list(range(len(ra)))) == ra.__getitems__(list(range(len(ra))))


def test_blobs_of_0_1_and_20_megabytes_round_trip(frames: Dataset) -> None:
    ra = frames.random_access(columns=["id", "image"])
    images = {r["id"]: r["image"] for r in ra.__getitems__(list(range(len(ra))))}
    assert images[1] == b""
    assert images[2] == b"\x02"
    assert images[3] == blob(3, 20 << 20)
    assert images[5] is None
    index = next(i for i in range(len(ra)) if ra[i]["id"] == 3)
    assert ra[index]["image"] == blob(3, 20 << 20)


def test_a_tiny_cache_still_reads_every_row(frames: Dataset) -> None:
    ra = frames.random_access(cache_bytes=0)
    full = frames.random_access()
    order = np.random.default_rng(1).permutation(len(ra)).tolist()
    assert [ra[i] for i in order] == full.__getitems__(order)
    with pytest.raises(InvalidInputError, match="cache_bytes"):
        frames.random_access(cache_bytes=-1)


def test_an_empty_dataset_has_no_rows(catalog: Catalog) -> None:
    ra = catalog.create_dataset("empty", SCHEMA, ["id"], record_fields=["image"]).random_access()
    assert len(ra) == 0
    assert ra.__getitems__([]) == []
    with pytest.raises(IndexError):
        ra[0]


# fork is Linux's default and the harder case (workers inherit the parent's state); spawn pickles the dataset.
@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_dataloader_with_two_workers_returns_every_row_once(
    tmp_path: Path, context: str, request: pytest.FixtureRequest
) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    if context == "fork" and not in_fresh_process(request):
        return  # it ran, and passed, in a process that never ran a Prefect flow (see tests/fresh_process.py)
    ds = Catalog(tmp_path / "lake").create_dataset(
        "frames", SCHEMA, ["id"], record_fields=["image"], options=WriteOptions(max_rows_per_file=50)
    )
    ds.append(rows(range(5, 205)))
    ds.delete(keys=[7, 8, 150])
    ra = ds.random_access(columns=["id", "image"])
    assert ra[0]["id"] == 5  # the parent reads records before forking: workers must not inherit broken state
    loader = torch_data.DataLoader(
        ra, batch_size=16, shuffle=True, num_workers=2, multiprocessing_context=context, collate_fn=list
    )
    seen = [(row["id"], row["image"]) for batch in loader for row in batch]
    ids = [i for i, _image in seen]
    assert sorted(ids) == sorted(set(range(5, 205)) - {7, 8, 150})
    assert all(image == (None if i % 10 == 5 else blob(i)) for i, image in seen)


def _read_every_row(ra: Any, out: Any) -> None:
    out.put(ra.__getitems__(list(range(len(ra)))))


def test_a_forked_child_reads_with_its_own_handles_and_locks(frames: Dataset, request: pytest.FixtureRequest) -> None:
    """A fork copies locks as they are: here another parent thread is mid-read when the child is forked."""
    if not in_fresh_process(request):
        return  # it ran, and passed, in a process that never ran a Prefect flow (see tests/fresh_process.py)
    ra = frames.random_access(columns=["id", "image"])
    expected = ra.__getitems__(list(range(len(ra))))  # the parent's caches and record readers are open
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    with ra._groups._lock:  # held by "another thread" at the moment of the fork
        child = fork.Process(target=_read_every_row, args=(ra, out))  # forked: the object is inherited, not pickled
        child.start()
    try:
        assert out.get(timeout=120) == expected
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


def test_grain_reads_it_as_a_data_source(frames: Dataset) -> None:
    grain = pytest.importorskip("grain")
    ra = frames.random_access(columns=["id", "label"])
    source = grain.MapDataset.source(ra)
    assert len(source) == len(ra)
    assert [source[i] for i in range(5)] == [ra[i] for i in range(5)]
    shuffled = [r["id"] for r in source.shuffle(seed=0)]
    assert sorted(shuffled) == sorted(r["id"] for r in ra)

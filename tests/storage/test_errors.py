"""Bad input and damaged datasets: the documented error type, a message naming the problem, nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from _disk import all_files, log_entries, nothing_written
from _model import COMPOSITE_KEY, SINGLE_KEY, MakeDataset

from storage import (
    Catalog,
    CorruptDatasetError,
    Dataset,
    DatasetNotFoundError,
    InvalidInputError,
    InvalidNameError,
    PrimaryKeyConflictError,
    SchemaMismatchError,
    StorageError,
    TagExistsError,
    VersionNotFoundError,
)

WRITES = ("append", "insert", "upsert")
FIRST_ENTRY = "_log/00000000000000000001.json"


@pytest.fixture
def ds(make_dataset: MakeDataset) -> Dataset:
    """Two snapshots of three rows in two files (so a write can fail after its first file)."""
    ds = make_dataset(SINGLE_KEY, "items", max_rows_per_file=2)
    ds.append(SINGLE_KEY.table([SINGLE_KEY.row((i,), "a", i) for i in range(3)]))
    return ds


@pytest.fixture
def root(ds: Dataset, catalog_root: Path) -> Path:
    return catalog_root / ds.name


# ----- input that does not fit the schema -------------------------------------------------------------

BAD_ROWS: list[tuple[str, dict[str, list[Any]], type[StorageError], str]] = [
    ("extra column", {"id": [10], "label": ["x"], "score": [1], "colour": ["red"]}, SchemaMismatchError, "'colour'"),
    ("type that does not cast", {"id": [10], "label": ["x"], "score": ["high"]}, SchemaMismatchError, "'score'"),
    ("lossy cast", {"id": [10], "label": ["x"], "score": [1.5]}, SchemaMismatchError, "'score'"),
    ("missing key column", {"label": ["x"], "score": [1]}, SchemaMismatchError, "'id'"),
    ("null key", {"id": [10, None], "label": ["x", "y"], "score": [1, 2]}, InvalidInputError, "'id'"),
    ("duplicate key", {"id": [10, 11, 10], "label": ["x", "y", "z"], "score": [1, 2, 3]}, InvalidInputError, "10"),
]


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize(("data", "error", "named"), [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS])
def test_bad_rows_are_refused_before_anything_is_written(
    ds: Dataset, root: Path, operation: str, data: dict[str, list[Any]], error: type[StorageError], named: str
) -> None:
    with nothing_written(ds, root), pytest.raises(error) as info:
        getattr(ds, operation)(data)
    assert named in str(info.value)


@pytest.mark.parametrize("operation", WRITES)
def test_duplicate_key_late_in_a_stream_removes_the_files_already_written(
    ds: Dataset, root: Path, operation: str
) -> None:
    def stream() -> Iterator[pa.RecordBatch]:
        # Six rows in three two-row files; the duplicate of key 20 only shows up in the last one.
        for ids in ([20, 21], [22, 23], [24, 20]):
            yield SINGLE_KEY.table([SINGLE_KEY.row((i,), "x", 0) for i in ids]).to_batches()[0]

    with nothing_written(ds, root), pytest.raises(InvalidInputError, match="20"):
        getattr(ds, operation)(stream())


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        ({"shard": ["a", "a"], "id": [1, None], "label": ["x", "y"], "score": [0, 0]}, "'id'"),
        ({"shard": ["a", None], "id": [1, 2], "label": ["x", "y"], "score": [0, 0]}, "'shard'"),
        ({"shard": ["a", "b", "a"], "id": [1, 1, 1], "label": ["x", "y", "z"], "score": [0, 0, 0]}, "('a', 1)"),
    ],
    ids=["null in second key column", "null in first key column", "duplicate composite key"],
)
def test_composite_key_errors(make_dataset: MakeDataset, catalog_root: Path, rows: dict[str, Any], named: str) -> None:
    ds = make_dataset(COMPOSITE_KEY, "pairs")
    # ('a', 1) and ('b', 1) differ: only the exact pair counts as a duplicate.
    with nothing_written(ds, catalog_root / "pairs"), pytest.raises(InvalidInputError) as info:
        ds.upsert(rows)
    assert named in str(info.value)


@pytest.mark.parametrize("operation", ["append", "insert"])
def test_existing_keys_are_named_and_nothing_is_written(ds: Dataset, root: Path, operation: str) -> None:
    with nothing_written(ds, root), pytest.raises(PrimaryKeyConflictError) as info:
        getattr(ds, operation)({"id": [2, 0], "label": ["x"] * 2, "score": [0] * 2})
    assert sorted(info.value.keys) == [0, 2]
    assert "0" in str(info.value) and "2" in str(info.value)


def test_existing_keys_in_several_files_are_all_named(ds: Dataset, root: Path) -> None:
    # Two rows per file: keys 2 and 0 land in different chunks of this input.
    with nothing_written(ds, root), pytest.raises(PrimaryKeyConflictError) as info:
        ds.insert({"id": [2, 99, 0], "label": ["x"] * 3, "score": [0] * 3})
    assert sorted(info.value.keys) == [0, 2]


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda ds: ds.delete(), "filter="),
        (lambda ds: ds.delete(pc.field("id") == 1, keys=[1]), "keys="),
        (lambda ds: ds.delete("id == 1"), "str"),
        (lambda ds: ds.delete(pc.field("colour") == "red"), "colour"),
    ],
    ids=["neither filter nor keys", "both filter and keys", "string filter", "unknown column"],
)
def test_bad_delete_arguments(ds: Dataset, root: Path, call: Any, named: str) -> None:
    with nothing_written(ds, root), pytest.raises(StorageError) as info:
        call(ds)
    assert isinstance(info.value, InvalidInputError | SchemaMismatchError)
    assert named in str(info.value)


def test_unknown_filter_column_is_refused_on_an_empty_dataset(make_dataset: MakeDataset, catalog_root: Path) -> None:
    ds = make_dataset(SINGLE_KEY, "empty")
    with pytest.raises(InvalidInputError, match="colour"):
        ds.read_all(filter=pc.field("colour") == "red")
    with nothing_written(ds, catalog_root / "empty"), pytest.raises(InvalidInputError, match="colour"):
        ds.delete(pc.field("colour") == "red")


@pytest.mark.parametrize("use", ["delete", "take"])
def test_key_dicts_without_the_key_column(ds: Dataset, root: Path, use: str) -> None:
    with nothing_written(ds, root), pytest.raises(InvalidInputError, match="'id'"):
        if use == "delete":
            ds.delete(keys=[{"idx": 1}])
        else:
            ds.take([{"idx": 1}])


def test_unknown_read_column_is_named(ds: Dataset) -> None:
    with pytest.raises(InvalidInputError, match="colour"):
        ds.read_all(columns=["id", "colour"])


# ----- versions, tags and branches that do not exist ---------------------------------------------------


@pytest.mark.parametrize(
    ("version", "named"),
    [(99, "99"), (-1, "-1"), ("nope", "nope"), (datetime(2000, 1, 1, tzinfo=UTC), "2000-01-01"), (1.5, "1.5")],
    ids=["snapshot id", "negative id", "tag or branch", "datetime before creation", "float"],
)
def test_unknown_version(ds: Dataset, root: Path, version: Any, named: str) -> None:
    for read in (ds.read_all, ds.count, ds.manifest, ds.snapshot, lambda version: ds.take([1], version=version)):
        with pytest.raises(VersionNotFoundError) as info:
            read(version=version)
        assert named in str(info.value)
    with nothing_written(ds, root), pytest.raises(VersionNotFoundError, match=named):
        ds.restore(version)
    with nothing_written(ds, root), pytest.raises(VersionNotFoundError, match=named):
        ds.tag("t", version=version)


def test_unknown_tag_and_branch(ds: Dataset, root: Path, catalog: Catalog) -> None:
    with nothing_written(ds, root):
        with pytest.raises(VersionNotFoundError, match="nope"):
            ds.untag("nope")
        with pytest.raises(VersionNotFoundError, match="nope"):
            ds.branch("nope")
        with pytest.raises(VersionNotFoundError, match="nope"):
            catalog.dataset("items", branch="nope")
    ds.tag("v1")
    with nothing_written(ds, root), pytest.raises(TagExistsError, match="v1"):
        ds.tag("v1", version=0)


# ----- names that would escape the catalog ------------------------------------------------------------

BAD_NAMES = ["../evil", "a/../../evil", "a/b", "..", ".hidden", "", "nul\x00name", "x" * 129, "_catalog"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_dataset_names(catalog: Catalog, tmp_path: Path, name: str) -> None:
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    for call in (
        lambda: catalog.create_dataset(name, SINGLE_KEY.schema, primary_keys=["id"]),
        lambda: catalog.dataset(name),
        lambda: catalog.drop(name),
    ):
        with pytest.raises(InvalidNameError) as info:
            call()
        assert repr(name) in str(info.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_absolute_dataset_name_creates_nothing_outside(catalog: Catalog, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    with pytest.raises(InvalidNameError, match="outside"):
        catalog.create_dataset(str(outside), SINGLE_KEY.schema, primary_keys=["id"])
    assert not outside.exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "nul\x00", "main/x"], ids=repr)
def test_bad_tag_names(ds: Dataset, root: Path, name: str) -> None:
    with nothing_written(ds, root), pytest.raises(InvalidNameError) as info:
        ds.tag(name)
    assert repr(name) in str(info.value)


def test_unknown_dataset_is_named(catalog: Catalog, ds: Dataset) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        catalog.dataset("missing")
    assert "'missing'" in str(info.value) and "items" in str(info.value)  # and it lists what does exist


# ----- damaged datasets ---------------------------------------------------------------------------------


def reopen(catalog_root: Path, name: str = "items") -> Dataset:
    """A handle from a new Catalog, as another process would get (no cached log entries)."""
    return Catalog(catalog_root).dataset(name)


def test_corrupted_log_entry_is_named(ds: Dataset, root: Path, catalog_root: Path) -> None:
    ds.upsert({"id": [1], "label": ["b"], "score": [1]})
    (root / FIRST_ENTRY).write_bytes(b"\x00garbage{")
    before = all_files(root)
    fresh = reopen(catalog_root)
    for call in (fresh.read_all, fresh.versions, fresh.validate, lambda: fresh.append({"id": [7]})):
        with pytest.raises(CorruptDatasetError) as info:
            call()
        assert FIRST_ENTRY.rsplit("/", 1)[-1] in str(info.value)
    assert all_files(root) == before  # the failed append wrote nothing


def test_validate_rereads_log_entries_on_an_open_handle(ds: Dataset, root: Path) -> None:
    (root / FIRST_ENTRY).write_bytes(b"garbage")
    with pytest.raises(CorruptDatasetError, match=FIRST_ENTRY.rsplit("/", 1)[1]):
        ds.validate()


@pytest.mark.parametrize("where", ["_meta.json", FIRST_ENTRY])
def test_unknown_format_version_is_refused(ds: Dataset, root: Path, catalog_root: Path, where: str) -> None:
    meta = json.loads((root / where).read_bytes())
    (root / where).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CorruptDatasetError) as info:
        reopen(catalog_root).read_all()
    assert where.rsplit("/", 1)[-1] in str(info.value) and "99" in str(info.value)


def test_unknown_catalog_format_version_is_refused(ds: Dataset, catalog_root: Path) -> None:
    (catalog_root / "_catalog.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CorruptDatasetError, match=r"_catalog\.json.*99"):
        Catalog(catalog_root)


def first_data_file(root: Path) -> str:
    manifest = log_entries(root)[-1]["manifest"]
    assert isinstance(manifest, str)
    return str(pq.read_table(root / manifest, columns=["path"]).column("path")[0])


def test_missing_data_file_is_named_by_validate(ds: Dataset, root: Path) -> None:
    victim = first_data_file(root)
    (root / victim).unlink()
    with pytest.raises(CorruptDatasetError, match=victim):
        ds.validate()


def test_truncated_data_file_is_named_by_validate(ds: Dataset, root: Path) -> None:
    victim = first_data_file(root)
    data = (root / victim).read_bytes()
    (root / victim).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match=victim):
        ds.validate()


def test_missing_data_file_on_read_is_corrupt_dataset_error(ds: Dataset, root: Path) -> None:
    victim = first_data_file(root)
    (root / victim).unlink()
    with pytest.raises(CorruptDatasetError, match=victim):
        ds.read_all()


def test_missing_manifest_is_named_by_validate(ds: Dataset, root: Path, catalog_root: Path) -> None:
    ds.read_all(version=1)  # what any reader of snapshot 1 does before the file goes missing
    manifest = log_entries(root)[1]["manifest"]
    assert isinstance(manifest, str)
    (root / manifest).unlink()
    with pytest.raises(CorruptDatasetError, match=manifest):
        reopen(catalog_root).validate()

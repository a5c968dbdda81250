"""Conversions to and from other frameworks: Hugging Face datasets, Ray Data, PyTorch, Parquet directories.

Each framework is an optional dependency, imported inside the function that needs it; a missing one raises
an error naming the extra to install.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads

from . import scan
from .access import RandomAccess
from .datafiles import WriteOptions
from .errors import InvalidInputError, StorageError
from .scan import SnapshotFiles

if TYPE_CHECKING:
    from .catalog import Catalog
    from .dataset import Dataset

# Rows per batch when streaming out of or into the engine: bounds memory when rows carry blobs.
BATCH_ROWS = 1024


def _optional(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return import_module(module)
    except ImportError as exc:
        raise StorageError(f"{module} is not installed; install it with: pip install 'labelhouse[{extra}]'") from exc


def _schema(snap: SnapshotFiles, columns: Sequence[str]) -> pa.Schema:
    return pa.schema([snap.schema.field(c) for c in columns])


def _batches(snap: SnapshotFiles, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    for _path, batch in scan.file_batches(snap, columns, batch_size=BATCH_ROWS):
        yield batch


# ----- exports ---------------------------------------------------------------------------------------------


def to_huggingface(snap: SnapshotFiles, cache_dir: str | None = None) -> Any:
    """A `datasets.Dataset` of every column of a snapshot, blobs included, memory-mapped from a cache file.

    The snapshot is written once as an Arrow stream file under `cache_dir` (default: Hugging Face's datasets
    cache, `labelhouse/` inside it) named by a hash of the snapshot's files; later calls reuse it.
    """
    hf = _optional("datasets", "hf")
    columns = snap.schema.names
    directory = cache_dir or os.path.join(str(hf.config.HF_DATASETS_CACHE), "labelhouse")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{scan.content_key(snap)}.arrow")
    if not os.path.exists(path):
        tmp = f"{path}.{uuid.uuid4().hex}.part"
        try:
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, _schema(snap, columns)) as writer:
                for batch in _batches(snap, columns):
                    writer.write_batch(batch)
            os.replace(tmp, path)  # the cache file appears complete or not at all
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return hf.Dataset.from_file(path)


def _read_files(items: pa.Table, snap: SnapshotFiles, columns: list[str]) -> Iterator[pa.Table]:
    """Ray task body: the live rows of the data files numbered in `items`, record fields resolved."""
    for i in items.column("file").to_pylist():
        one_file = dataclasses.replace(snap, manifest=snap.manifest.slice(i, 1))
        for batch in _batches(one_file, columns):
            yield pa.Table.from_batches([batch])


def to_ray(snap: SnapshotFiles, columns: Sequence[str]) -> Any:
    """A `ray.data.Dataset` of a snapshot, read in parallel: one read task per data file."""
    ray_data = _optional("ray.data", "ray")
    files = snap.manifest.num_rows
    if files == 0:
        return ray_data.from_arrow(_schema(snap, columns).empty_table())
    items = ray_data.from_items([{"file": i} for i in range(files)], override_num_blocks=files)
    return items.map_batches(
        _read_files,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={"snap": snap, "columns": list(columns)},
    )


def to_torch(access: RandomAccess, transform: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A `torch.utils.data.Dataset` over random access rows (optionally passed through `transform`)."""
    _optional("torch", "torch")
    from .torch_dataset import TorchDataset

    return TorchDataset(access, transform)


# ----- imports ---------------------------------------------------------------------------------------------


def _import(
    cat: Catalog,
    name: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch | pa.Table],
    primary_keys: Sequence[str],
    record_fields: Sequence[str] | None,
    options: WriteOptions | None,
) -> Dataset:
    """Create dataset `name` and append the stream as its first snapshot; drop it again if that fails."""
    ds = cat.create_dataset(name, schema, primary_keys, record_fields, options=options)
    try:
        ds.append(batches, message="import")
    except BaseException:
        cat.drop(name)  # it was created here and holds nothing else: a retry starts clean
        raise
    return ds


def from_huggingface(
    cat: Catalog,
    name: str,
    hf_dataset: Any,
    primary_keys: Sequence[str],
    record_fields: Sequence[str] | None = None,
    options: WriteOptions | None = None,
) -> Dataset:
    """A new dataset holding the rows of a `datasets.Dataset` (its features kept in the schema metadata)."""
    hf = _optional("datasets", "hf")
    if not isinstance(hf_dataset, hf.Dataset):
        hint = " pick a split, e.g. dd['train']" if isinstance(hf_dataset, hf.DatasetDict) else ""
        raise InvalidInputError(f"from_huggingface takes a datasets.Dataset, got {type(hf_dataset).__name__};{hint}")
    # iter() honours an indices mapping (after select/shuffle/filter), which the raw Arrow table does not.
    batches = hf_dataset.with_format("arrow").iter(batch_size=BATCH_ROWS)
    return _import(cat, name, hf_dataset.data.schema, batches, primary_keys, record_fields, options)


def from_parquet(
    cat: Catalog,
    name: str,
    directory: str | os.PathLike[str],
    primary_keys: Sequence[str],
    record_fields: Sequence[str] | None = None,
    options: WriteOptions | None = None,
) -> Dataset:
    """A new dataset holding the rows of the Parquet files under `directory`, streamed in batches."""
    try:
        source = pads.dataset(os.fspath(directory), format="parquet")
    except (FileNotFoundError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(f"cannot read Parquet files under {os.fspath(directory)!r}: {exc}") from exc
    batches = source.to_batches(batch_size=BATCH_ROWS)
    return _import(cat, name, source.schema, batches, primary_keys, record_fields, options)

"""Everything a dataset operation needs: its store, its fixed metadata, its log and its tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from . import manifest as mf
from .arrow_cache import ArrowCache
from .datafiles import ROW_GROUPS, Layout, WriteOptions, read_physical, read_positions, write_data_file
from .errors import CorruptDatasetError
from .formats import (
    DATASET_FORMAT_VERSION,
    DATASET_FORMAT_VERSIONS,
    META_FILE,
    check_format_version,
    decode_json,
    decode_schema,
    encode_json,
    encode_schema,
)
from .io import ObjectStore
from .log import Log, LogEntry
from .records import RecordFormat, RecordReader
from .refs import Tags
from .scan import SnapshotFiles
from .stats import stat_fields


@dataclass(frozen=True)
class DatasetMeta:
    """The fixed definition of a dataset, written once at creation."""

    schema: pa.Schema
    primary_keys: list[str]
    record_fields: list[str]
    created_at: datetime
    options: WriteOptions = field(default_factory=WriteOptions)
    format_version: int = DATASET_FORMAT_VERSION  # what an existing dataset's _meta.json says

    def to_json(self) -> bytes:
        """Serialize for `_meta.json`."""
        return encode_json(
            {
                "format_version": self.format_version,
                "schema": encode_schema(self.schema),
                "columns": [f"{f.name}: {f.type}" for f in self.schema],  # for people reading the file
                "primary_keys": self.primary_keys,
                "record_fields": self.record_fields,
                "created_at": self.created_at.isoformat(),
                "options": self.options.to_json(),
            }
        )

    @staticmethod
    def from_json(data: bytes, where: str) -> DatasetMeta:
        """Parse `_meta.json`."""
        obj: dict[str, Any] = decode_json(data, where)
        check_format_version(obj, where, DATASET_FORMAT_VERSIONS)
        try:
            return DatasetMeta(
                schema=decode_schema(obj["schema"]),
                primary_keys=list(obj["primary_keys"]),
                record_fields=list(obj["record_fields"]),
                created_at=datetime.fromisoformat(obj["created_at"]),
                options=WriteOptions(**obj.get("options", {})),
                format_version=int(obj["format_version"]),
            )
        except (KeyError, TypeError, ValueError, pa.ArrowInvalid) as exc:
            raise CorruptDatasetError(f"{where}: dataset metadata is malformed ({exc})") from exc


@dataclass(frozen=True)
class RecordCacheOptions:
    """Where record files of remote catalogs are cached locally, and how many bytes the cache may hold."""

    directory: str | None = None  # default: <tmp>/labelhouse-records
    max_bytes: int = 2 << 30


class DatasetContext:
    """Shared state of one open dataset; every branch handle of it uses the same context (and caches)."""

    def __init__(
        self,
        name: str,
        store: ObjectStore,
        meta: DatasetMeta,
        cache: RecordCacheOptions | None = None,
        arrow_cache: ArrowCache | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.meta = meta
        self.arrow_cache = arrow_cache
        self.log = Log(store)
        self.tags = Tags(store)
        self.stat_fields = stat_fields(meta.schema, set(meta.record_fields))
        self.manifest_schema = mf.manifest_schema(meta.schema, meta.record_fields)
        cache = cache or RecordCacheOptions()
        records = RecordFormat.of(pa.schema([meta.schema.field(c) for c in meta.record_fields]), meta.format_version)
        self.layout = Layout(
            meta.schema, tuple(meta.record_fields), RecordReader(store, cache.directory, cache.max_bytes), records
        )

    @staticmethod
    def open(
        name: str, store: ObjectStore, cache: RecordCacheOptions | None = None, arrow_cache: ArrowCache | None = None
    ) -> DatasetContext:
        """Read a dataset's metadata; FileNotFoundError if there is none."""
        meta = DatasetMeta.from_json(store.read_bytes(META_FILE), f"{store.uri}/{META_FILE}")
        return DatasetContext(name, store, meta, cache, arrow_cache)

    @property
    def key_schema(self) -> pa.Schema:
        """The primary key columns."""
        return pa.schema([self.meta.schema.field(k) for k in self.meta.primary_keys])

    def manifest(self, entry: LogEntry) -> pa.Table:
        """The manifest of a snapshot."""
        if entry.manifest is None:
            raise CorruptDatasetError(
                f"dataset {self.name!r}: snapshot {entry.snapshot_id} ({entry.operation}) has no manifest"
            )
        return mf.read(self.store, entry.manifest)

    def files(self, entry: LogEntry) -> SnapshotFiles:
        """A reader's view of a snapshot."""
        return SnapshotFiles(self.store, self.layout, self.manifest(entry), self.stat_fields, self.arrow_cache)

    def write_data(self, table: pa.Table) -> dict[str, Any]:
        """Write one data file of rows in the dataset's schema; returns its manifest row."""
        return write_data_file(self.store, table, self.stat_fields, self.meta.options, self.layout)

    def read_at(self, path: str, positions: np.ndarray[Any, Any], columns: list[str]) -> pa.Table:
        """Rows at physical positions of one data file, in the given order."""
        return read_positions(self.store, self.layout, path, positions, columns)

    def read_physical_at(self, path: str, positions: np.ndarray[Any, Any], physical: list[str]) -> pa.Table:
        """Stored columns (record fields as addresses) at physical positions of one data file, in order.

        Through the process's row group cache: the row images of successive commits read the same files.
        """
        return read_physical(self.store, self.layout, path, positions, physical, ROW_GROUPS)

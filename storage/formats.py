"""Format constants and the (de)serialization of small metadata objects."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from .errors import CorruptDatasetError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
# A dataset's own version (its _meta.json): version 2 stores a lone binary or string record field as the bare
# value (records.RecordFormat). Readers that know only version 1 then refuse the dataset instead of misreading
# its records; version 1 datasets keep framing theirs.
DATASET_FORMAT_VERSION = 2
DATASET_FORMAT_VERSIONS = frozenset({1, 2})

META_FILE = "_meta.json"
LOG_DIR = "_log"
REFS_DIR = "_refs"
DATA_DIR = "data"
DV_DIR = "dv"
MANIFEST_DIR = "manifests"
CHANGES_DIR = "changes"
RECORDS_DIR = "records"
# A materialized view's join traces: files a snapshot names in its properties (a JSON map to paths), not
# in its manifest, so vacuum keeps them while the snapshot lives and removes them after.
TRACE_DIR = "_view_traces"
TRACES_PROP = "lh.view.traces"
TMP_PREFIX = ".tmp-"
LOG_ID_WIDTH = 20


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, to the microsecond."""
    return datetime.now(UTC)


def encode_json(obj: Any) -> bytes:
    """Stable, compact JSON bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(data: bytes, where: str) -> Any:
    """Parse JSON metadata, turning any failure into CorruptDatasetError naming the file."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptDatasetError(
            f"{where}: metadata is not valid JSON ({exc}); restore the file from a backup or remove the "
            "dataset's newest log entry if a crashed tool wrote it"
        ) from exc


def check_format_version(
    obj: dict[str, Any], where: str, supported: frozenset[int] = SUPPORTED_FORMAT_VERSIONS
) -> None:
    """Refuse metadata written by a format this reader does not know."""
    version = obj.get("format_version")
    if version not in supported:
        raise CorruptDatasetError(
            f"{where}: format_version {version!r} is not supported by this Labelhouse (knows "
            f"{sorted(supported)}); upgrade Labelhouse to read this dataset"
        )


def encode_schema(schema: pa.Schema) -> str:
    """An Arrow schema as base64 IPC bytes (keeps every type and metadata exactly)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(data: str) -> pa.Schema:
    """Inverse of encode_schema."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data)))


def log_name(snapshot_id: int) -> str:
    """The log entry path of a snapshot id; zero-padded so listing order is id order."""
    return f"{LOG_DIR}/{snapshot_id:0{LOG_ID_WIDTH}d}.json"


POS_COLUMN = "_lh_pos"
RESERVED_PREFIX = "_lh_"

"""Parse ONE WebDataset tar shard into canonical items and component rows (run shards in parallel).

Each sample becomes an item `<source>:<key>` (WebDataset keys name samples across a data set). Its
`data` holds `__key__`, `__url__` (the shard), each component's size, type and sha256, and the decoded
value of small text components (`cls`, `txt`, `json`...) so they can be queried; `raw` is the same
description as JSON (a tar member has no JSON of its own). Bad members (path traversal, links, a key
split across the shard, a file name twice in a sample) are source rejects; the shard's other samples
ingest. A shard that is empty (no bytes, or no members) has no samples; one that is not a tar archive
is one reject.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from storage.groundtruth import item_id

from ..changes import canonical_table
from ..json_node import escape_token
from ..media import HEADER_BYTES, content_type, image_size, media_type, pixels
from ..provenance import Provenance
from ..rejects import SourceReject
from .components import COMPONENTS_SCHEMA
from .members import is_shard_metadata, split_name, unsafe_reason

SOURCE = "webdataset"
_TEXT_EXTENSIONS = frozenset({"txt", "text", "cls", "cls2", "index", "inx", "id", "json", "jsn"})
_MAX_INLINE = 64 * 1024
# A parsed shard is held in memory: a compressed shard (.tar.gz) must not inflate past these.
MAX_MEMBER_BYTES = 512 << 20
MAX_SHARD_BYTES = 4 << 30


@dataclass(frozen=True)
class ParsedShard:
    """One shard's rows; picklable, so a Ray task can return it."""

    shard: str
    sha256: str
    items: pa.Table
    components: pa.Table
    rejects: list[SourceReject] = field(default_factory=list)
    metadata: dict[str, bytes] = field(default_factory=dict)  # shard-level members such as __meta__
    bytes_read: int = 0


@dataclass
class _Sample:
    key: str
    files: dict[str, tuple[tarfile.TarInfo, bytes]] = field(default_factory=dict)


def parse_shard(
    shard: str | Path, *, content: bytes | None = None, source: str = SOURCE, flow_run_id: str | None = None
) -> ParsedShard:
    """Parse a tar shard into items and components: `content` if given (e.g. read from S3, `shard` being
    its URL), else the local file `shard`."""
    url = str(shard)
    name = url.rsplit("/", 1)[-1]
    if content is None:
        content = Path(shard).read_bytes()
    sha256 = hashlib.sha256(content).hexdigest()
    provenance = Provenance(source=source, source_ref=f"{name}@sha256:{sha256[:16]}", flow_run_id=flow_run_id)
    rejects: list[SourceReject] = []
    metadata: dict[str, bytes] = {}
    samples: list[_Sample] = []
    if content:
        try:
            samples = _read_samples(content, provenance, rejects, metadata)
        except tarfile.TarError as exc:
            reason = f"{url}: not a readable tar archive ({exc}); rewrite the shard"
            rejects.append(SourceReject(provenance.source_ref, "", reason, content[:200].decode("latin-1")))
    items, components = [], []
    for sample in samples:
        item, parts = _rows(sample, name, provenance)
        items.append(item)
        components.extend(parts)
    return ParsedShard(
        shard=url,
        sha256=sha256,
        items=canonical_table("items", items),
        components=pa.Table.from_pylist(components, schema=COMPONENTS_SCHEMA),
        rejects=rejects,
        metadata=metadata,
        bytes_read=len(content),
    )


def _read_samples(
    content: bytes, provenance: Provenance, rejects: list[SourceReject], metadata: dict[str, bytes]
) -> list[_Sample]:
    samples: list[_Sample] = []
    finished: set[str] = set()

    def reject(member: tarfile.TarInfo, reason: str) -> None:
        text = json.dumps(_header(member), ensure_ascii=False)
        rejects.append(SourceReject(provenance.source_ref, _pointer(member.name), reason, text))

    inflated = 0
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as archive:
        for member in archive:
            if member.isdir():
                continue
            problem = unsafe_reason(member)
            if problem:
                reject(member, problem)
                continue
            if member.size > min(MAX_MEMBER_BYTES, MAX_SHARD_BYTES - inflated):
                limits = f"{MAX_MEMBER_BYTES} per member and {MAX_SHARD_BYTES} per shard"
                reject(member, f"member {member.name!r} is {member.size} bytes, over the limit of {limits}; split it")
                continue
            handle = archive.extractfile(member)
            data = handle.read() if handle is not None else b""
            inflated += len(data)
            if is_shard_metadata(member.name):
                metadata[member.name] = data
                continue
            name = split_name(member.name)
            if name is None:
                reject(member, f"member {member.name!r} has no extension, so it belongs to no sample; rename it")
                continue
            current = samples[-1] if samples and samples[-1].key == name.key else None
            if current is None:
                if name.key in finished:
                    reject(
                        member,
                        f"member {member.name!r}: key {name.key!r} appeared earlier in the shard, apart from "
                        "this file; write each sample's files next to each other",
                    )
                    continue
                if samples:
                    finished.add(samples[-1].key)
                current = _Sample(name.key)
                samples.append(current)
            if name.extension in current.files:
                reject(member, f"member {member.name!r}: sample {name.key!r} already has a {name.extension} file")
                continue
            current.files[name.extension] = (member, data)
    return samples


def _rows(sample: _Sample, shard: str, provenance: Provenance) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    item = item_id(provenance.source, sample.key)
    described: dict[str, dict[str, Any]] = {}
    values: dict[str, Any] = {}
    for extension, (member, data) in sample.files.items():
        suffix = extension.rsplit(".", 1)[-1]
        textual = suffix in _TEXT_EXTENSIONS
        described[extension] = {
            "member": member.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            # WebDataset's own text extensions (`cls` is a class index, not a TeX class file).
            "content_type": _text_type(suffix) if textual else content_type(member.name, data[:16]),
        }
        if textual and len(data) <= _MAX_INLINE:
            values[extension] = _text_value(extension, data)
    main = next((e for e, d in described.items() if d["content_type"].startswith("image/")), next(iter(described)))
    main_data = sample.files[main][1]
    size = image_size(main_data[:HEADER_BYTES])
    description = {"__key__": sample.key, "__url__": shard, "main": main, "components": described, "values": values}
    raw = json.dumps(description, ensure_ascii=False)
    pointer = _pointer(sample.key)
    row = {
        "id": item,
        "source_id": sample.key,
        "media_type": media_type(described[main]["content_type"]),
        "uri": None,
        "width": pixels(size.width) if size else None,
        "height": pixels(size.height) if size else None,
        "data": raw,
        "blob": main_data,
        **provenance.columns(raw, pointer),
    }
    components = [
        {
            "id": f"{item}/{extension}",
            "item_id": item,
            "extension": extension,
            "content_type": info["content_type"],
            "bytes": info["bytes"],
            "sha256": info["sha256"],
            "data": sample.files[extension][1],
            **provenance.columns(json.dumps(_header(sample.files[extension][0])), _pointer(info["member"])),
        }
        for extension, info in described.items()
        if extension != main
    ]
    return row, components


def _text_type(suffix: str) -> str:
    return "application/json" if suffix in ("json", "jsn") else "text/plain"


def _text_value(extension: str, data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
        return json.loads(text) if extension.endswith(("json", "jsn")) else text
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # not text after all: the bytes stay in the component


def _header(member: tarfile.TarInfo) -> dict[str, Any]:
    return {"name": member.name, "size": member.size, "mtime": member.mtime, "offset": member.offset_data}


def _pointer(name: str) -> str:
    # A shard is no JSON document: its members are addressed like the keys of an object.
    return f"/{escape_token(name)}"

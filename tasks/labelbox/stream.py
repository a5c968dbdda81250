"""Stream a Labelbox export v2 / export streamable NDJSON file into change sets, chunk by chunk.

One line is one data row with its labels in every project. Lines are read one at a time and mapped in
chunks of `chunk_lines`, so memory stays bounded by the chunk, not the file. A line that is not JSON,
not an object, or holds a field of the wrong type is a source reject naming its line number; the rest
of its chunk ingests. Pointers treat the file as an array of lines: `/16/projects/<id>/labels/0` is in
line 17.

Each chunk replaces its data rows' annotations (`replaced_items`), so a label deleted in Labelbox goes
away when its data row is exported again; a chunk never deletes data rows it does not hold.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..changes import ChangeSet, canonical_table
from ..errors import SourceFormatError
from ..json_node import Node
from ..json_source import check_depth, check_unicode
from ..provenance import Provenance
from ..rejects import SourceReject
from .data_rows import item_row
from .labels import label_rows

SOURCE = "labelbox"
DEFAULT_CHUNK_LINES = 1000
_FILE_BLOCK = 1 << 20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # only such an escape can make a line's text unstorable
# A data row with every label of every project is KBs to a few MB; a longer line is refused unread.
MAX_LINE_BYTES = 64 << 20


@dataclass(frozen=True)
class ExportChunk:
    """The rows of lines `first_line`..`last_line` (1-based) and the lines that could not be read."""

    first_line: int
    last_line: int
    idempotency_key: str  # content-derived: the same lines of the same export again are a no-op
    changes: ChangeSet
    rejects: list[SourceReject] = field(default_factory=list)


def iter_export(
    lines: Iterable[bytes | str | LongLine],
    *,
    name: str = "export.ndjson",
    source_ref: str | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[ExportChunk]:
    """Parse NDJSON `lines` (e.g. an open file, or the SDK's stream) into one ExportChunk per `chunk_lines`.

    `source_ref` identifies the export in provenance (default: `name`); `read_export_file` sets it to
    the file's name and content hash. A line over `max_line_bytes` (newline included) is a reject naming
    its line number; `read_export_file` skips such a line without holding it in memory.
    """
    if chunk_lines < 1:
        raise ValueError(f"chunk_lines must be at least 1, got {chunk_lines}")
    provenance = Provenance(source=source, source_ref=source_ref or name, flow_run_id=flow_run_id)
    parser = _ChunkParser(name, provenance, max_line_bytes)
    for number, line in enumerate(lines, start=1):
        parser.add(number, line)
        if parser.size >= chunk_lines:
            yield parser.flush()
    if parser.size:
        yield parser.flush()


def read_export_file(
    path: str | Path,
    *,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[ExportChunk]:
    """`iter_export` over a file, with `source_ref` = `<file name>@sha256:<content hash>`.

    The file is read twice, streaming both times: once to hash it, once to parse it.
    """
    path = Path(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_FILE_BLOCK):
            digest.update(block)
    with path.open("rb") as handle:
        yield from iter_export(
            _bounded_lines(handle, max_line_bytes),
            name=path.name,
            source_ref=f"{path.name}@sha256:{digest.hexdigest()[:16]}",
            source=source,
            flow_run_id=flow_run_id,
            chunk_lines=chunk_lines,
            max_line_bytes=max_line_bytes,
        )


@dataclass(frozen=True)
class LongLine:
    """A line over the size limit, read past in blocks: its length, first bytes and content hash."""

    size: int
    head: bytes
    sha256: str


def _bounded_lines(handle: BinaryIO, limit: int) -> Iterator[bytes | LongLine]:
    """The lines of `handle` (each counted with its newline), never holding more than `limit` bytes of one."""
    while first := handle.readline(limit):
        if first.endswith(b"\n") or len(first) < limit:
            yield first
            continue
        line, size, digest = first, len(first), hashlib.sha256(first)
        while not line.endswith(b"\n") and (line := handle.readline(_FILE_BLOCK)):
            size += len(line)
            digest.update(line)
        yield first if size == len(first) else LongLine(size, first[:200], digest.hexdigest())


class _ChunkParser:
    """Accumulates the rows of one chunk of lines."""

    def __init__(self, name: str, provenance: Provenance, max_line_bytes: int) -> None:
        self.name = name
        self.provenance = provenance
        self.max_line_bytes = max_line_bytes
        self._reset(1)

    def _reset(self, first_line: int) -> None:
        self.first_line = first_line
        self.size = 0
        self.digest = hashlib.sha256(f"{self.provenance.source_ref}\n{first_line}\n".encode())
        self.items: list[dict[str, object]] = []
        self.annotations: list[dict[str, object]] = []
        self.rejects: list[SourceReject] = []

    def add(self, number: int, line: bytes | str | LongLine) -> None:
        pointer = f"/{number - 1}"
        if isinstance(line, LongLine) or len(line) > self.max_line_bytes:
            self._add_long(number, pointer, line)
            return
        data = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
        self.size += 1
        self.digest.update(data.rstrip(b"\r\n") + b"\n")
        if not data.strip():
            return  # blank lines (a trailing newline, a separator) are not data rows
        try:
            text = data.decode("utf-8-sig").strip()
            value = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._reject(number, pointer, data, f"{exc}; fix the line or export again")
            return
        except RecursionError:
            self._reject(number, pointer, data, "JSON nested too deeply to parse; fix the line or export again")
            return
        line_node = Node(value, pointer, f"{self.name}, line {number}")
        try:
            check_depth(value, line_node.where)
            if _SURROGATE_ESCAPE.search(text):
                check_unicode(value, line_node.where)
            if not isinstance(value, dict):
                raise line_node.expect("a data row object")
            item, data_row = item_row(line_node, text, self.provenance)
            rows = [
                row
                for project in (line_node.child("projects").as_dict() or {})
                for label in line_node.child("projects").child(project).child("labels").items()
                for row in label_rows(label, data_row, self.provenance)
            ]
        except SourceFormatError as exc:
            self._reject(number, pointer, data, str(exc))
            return
        self.items.append(item)
        self.annotations.extend(rows)

    def _add_long(self, number: int, pointer: str, line: bytes | str | LongLine) -> None:
        if not isinstance(line, LongLine):
            data = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
            line = LongLine(len(data), data[:200], hashlib.sha256(data).hexdigest())
        self.size += 1
        self.digest.update(f"<line of {line.size} bytes, sha256 {line.sha256}>\n".encode())
        problem = (
            f"the line is {line.size} bytes, over the limit of {self.max_line_bytes}; it was not read. Split the "
            "data row's labels or raise max_line_bytes"
        )
        self._reject(number, pointer, line.head, problem)

    def _reject(self, number: int, pointer: str, data: bytes, problem: str) -> None:
        reason = problem if problem.startswith(self.name) else f"{self.name}, line {number}: {problem}"
        text = data.decode("utf-8", "replace").rstrip("\r\n")
        self.rejects.append(SourceReject(self.provenance.source_ref, pointer, reason, text))

    def flush(self) -> ExportChunk:
        items = canonical_table("items", self.items)
        chunk = ExportChunk(
            first_line=self.first_line,
            last_line=self.first_line + self.size - 1,
            idempotency_key=f"{self.provenance.source}:ndjson:{self.digest.hexdigest()}",
            changes=ChangeSet(
                items=items,
                annotations=canonical_table("annotations", self.annotations),
                predictions=canonical_table("predictions", []),
                replaced_items=tuple(items["id"].to_pylist()),
            ),
            rejects=self.rejects,
        )
        self._reset(chunk.last_line + 1)
        return chunk

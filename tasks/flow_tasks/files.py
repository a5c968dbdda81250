"""Batches of the file sources beside Label Studio: a COCO instances file, a Labelbox NDJSON export."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..coco import parse_coco
from ..errors import SourceError
from ..labelbox import read_export_file
from .staging import BatchInfo, ParsedBatch


def _require_file(path: str | os.PathLike[str], what: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise SourceError(f"no {what} at {file}; check the path")
    return file


def coco_batch(path: str | os.PathLike[str], image_dir: str | Path | None, flow_run_id: str | None) -> ParsedBatch:
    """A COCO instances file of a whole project; labels are checked against its own categories."""
    file = _require_file(path, "COCO instances file")
    parsed = parse_coco(file.read_bytes(), name=file.name, image_dir=image_dir, flow_run_id=flow_run_id)
    info = BatchInfo(f"{file.name} (COCO)", parsed.idempotency_key, class_map=parsed.class_map)
    return ParsedBatch(parsed.changes, info, tuple(parsed.rejects))


def labelbox_batches(path: str | os.PathLike[str], chunk_lines: int, flow_run_id: str | None) -> Iterator[ParsedBatch]:
    """A Labelbox NDJSON export, `chunk_lines` lines per batch, read as it goes (bounded memory)."""
    file = _require_file(path, "Labelbox export")
    for chunk in read_export_file(file, flow_run_id=flow_run_id, chunk_lines=chunk_lines):
        source_ref = f"{file.name} lines {chunk.first_line}-{chunk.last_line} (Labelbox)"
        yield ParsedBatch(chunk.changes, BatchInfo(source_ref, chunk.idempotency_key), tuple(chunk.rejects))

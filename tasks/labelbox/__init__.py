"""Labelbox connector: export v2 / export streamable NDJSON, streamed into canonical change sets."""

from .ingest import ingest_export
from .stream import ExportChunk, iter_export, read_export_file

__all__ = ["ExportChunk", "ingest_export", "iter_export", "read_export_file"]

"""COCO connector: instances JSON (with optional image directory) into canonical change sets."""

from .ingest import ingest_coco
from .parse import ParsedCoco, parse_coco
from .rle import decode_counts, encode_counts, mask_area

__all__ = ["ParsedCoco", "decode_counts", "encode_counts", "ingest_coco", "mask_area", "parse_coco"]

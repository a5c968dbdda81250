"""S3 bucket source: every new object under a prefix as an item with its blob, resumable by watermark."""

from .client import S3Options
from .ingest import BucketIngest, ingest_prefix
from .watermark import Watermark, latest_watermark

__all__ = ["BucketIngest", "S3Options", "Watermark", "ingest_prefix", "latest_watermark"]

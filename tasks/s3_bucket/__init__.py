"""S3 bucket source: every new object under a prefix as an item with its blob, resumable by watermark."""

from .client import S3Options, split_url
from .ingest import BucketIngest, BucketPlan, FetchedBatch, ObjectBatch, fetch_batch, ingest_prefix, plan_prefix
from .watermark import Watermark, latest_watermark

__all__ = [
    "BucketIngest",
    "BucketPlan",
    "FetchedBatch",
    "ObjectBatch",
    "S3Options",
    "Watermark",
    "fetch_batch",
    "ingest_prefix",
    "latest_watermark",
    "plan_prefix",
    "split_url",
]

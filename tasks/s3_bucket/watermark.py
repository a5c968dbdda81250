"""How far the ingest of an S3 prefix got, kept in the properties of the items commit that got it there.

`since`: every object under the prefix whose LastModified is before `since` has been committed. A rerun
lists the prefix (S3 cannot list by time) and looks only at objects modified at or after `since`; of
those it skips the ones the items dataset already holds with the same ETag, so an object is neither
skipped nor ingested twice, and an overwritten object (new ETag) is ingested again. `since` trails the
newest committed LastModified by `overlap`, because S3 stamps an object with the time its upload
*started*: an upload still running during one listing shows up in a later listing with an older
timestamp, and must still fall inside the window. Make `overlap` longer than your slowest upload.

Writing the watermark in the same commit as the rows makes a crash harmless: before the commit, the
old watermark is in force and the batch is redone (an upsert by object key, so no duplicates); after
it, the batch is not looked at again. `last_key` (the last key committed) is informational.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage import Dataset

from ..watermarks import decode_watermark, encode_watermark, iso


def property_name(bucket: str, prefix: str) -> str:
    """The commit property holding the watermark of one bucket prefix."""
    return f"s3_watermark:s3://{bucket}/{prefix}"


@dataclass(frozen=True)
class Watermark:
    """How far the ingest of one bucket prefix got; see the module docstring. Serialize with `to_json()`."""

    bucket: str
    prefix: str
    since: datetime | None = None
    last_key: str | None = None

    def to_json(self) -> str:
        """A compact JSON string for the items commit's properties."""
        return encode_watermark(
            {
                "bucket": self.bucket,
                "prefix": self.prefix,
                "since": iso(self.since) if self.since else None,
                "last_key": self.last_key,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Watermark:
        """Parse `to_json()` output; SourceFormatError if it is something else."""

        def build(value: dict[str, Any]) -> Watermark:
            since = value["since"]
            return cls(
                bucket=value["bucket"],
                prefix=value["prefix"],
                since=datetime.fromisoformat(since) if since else None,
                last_key=value.get("last_key"),
            )

        return decode_watermark(
            text,
            build,
            what="an S3 ingest watermark",
            fix="it was written by another tool or version: restore the items dataset to a version with a valid "
            "watermark, or ingest from scratch",
        )


def latest_watermark(items: Dataset, bucket: str, prefix: str) -> Watermark:
    """The watermark of the newest commit on the items' branch that has one (none yet: from scratch)."""
    name = property_name(bucket, prefix)
    versions = items.versions()
    for branch, properties in reversed(
        list(zip(versions["branch"].to_pylist(), versions["properties"].to_pylist(), strict=True))
    ):
        if branch == items.branch_name and name in (found := json.loads(properties or "{}")):
            return Watermark.from_json(found[name])
    return Watermark(bucket, prefix)

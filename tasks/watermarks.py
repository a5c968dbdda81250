"""Watermarks: how far the incremental ingest of a source got, as versioned JSON kept with its commit.

Shared by the Label Studio pull and the S3 bucket ingest. Both sources can only be read "changed at or
after `since`", and both stamp a change with a time taken before the change is visible (a lock wait, an
upload still running), so `since` trails the newest timestamp seen by an overlap and a later read
re-reads the window: what it already holds is recognised there (by version or ETag), never repeated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .errors import SourceFormatError

FORMAT = 1
T = TypeVar("T")


def encode_watermark(fields: Mapping[str, Any]) -> str:
    """`fields` as compact JSON stamped with the format version, e.g. for a commit's properties."""
    return json.dumps({"format": FORMAT, **fields}, separators=(",", ":"))


def decode_watermark(text: str, build: Callable[[dict[str, Any]], T], *, what: str, fix: str) -> T:
    """`build` applied to the fields `encode_watermark` wrote; SourceFormatError naming `what` the text
    should have been and how to `fix` it when it is something else."""
    try:
        value = json.loads(text)
        if value.get("format") != FORMAT:
            raise ValueError(f"unknown format {value.get('format')!r}")
        return build(value)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SourceFormatError(f"not {what} ({exc}): {text[:200]!r}; {fix}") from None


def iso(moment: datetime) -> str:
    """A timestamp as ISO 8601 in UTC, the form watermarks store."""
    return moment.astimezone(UTC).isoformat()


def trailing_since(since: datetime | None, newest: datetime, overlap: timedelta) -> datetime:
    """The next `since`: `overlap` behind the newest timestamp seen, and never earlier than `since`."""
    trailing = newest - overlap
    return trailing if since is None else max(since, trailing)

"""Input a parser could not turn into rows at all: reported with where it is and why, then kept."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceReject:
    """A malformed NDJSON line, an unreadable annotation or archive member, and its verbatim text."""

    source_ref: str  # the file or shard, as in the rows' `source_ref`
    source_pointer: str  # where inside it, e.g. "/16" for line 17 of an NDJSON file
    reason: str  # names the line or member and what to fix
    text: str  # the input itself, so it can be fixed and re-ingested

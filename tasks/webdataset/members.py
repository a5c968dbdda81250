"""WebDataset naming rules: which tar members are sample files, and their sample key and extension.

As in WebDataset: the key is the member's path up to the first dot of its base name, the extension
is everything after that dot, lower-cased (`cam1/000003.seg.png` is key `cam1/000003`, extension
`seg.png`). Files of a sample are written next to each other; a key that comes back later is another
sample. Top-level names like `__meta__` (no dot, wrapped in double underscores) are shard metadata,
not samples. Names that would leave the extraction directory (absolute, `..`) and members that are not
regular files (links, devices) are refused.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from typing import NamedTuple

_SAMPLE_FILE = re.compile(r"^((?:.*/)?[^./]+)\.([^/]+)$")


class MemberName(NamedTuple):
    key: str
    extension: str


def is_shard_metadata(name: str) -> bool:
    """Whether a member is shard-level metadata such as `__meta__` (WebDataset readers skip these)."""
    return "/" not in name and name.startswith("__") and name.endswith("__")


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member cannot be ingested (path traversal, link, device), or None if it can."""
    name = member.name
    normalized = posixpath.normpath(name)
    if name.startswith("/") or normalized == ".." or normalized.startswith("../") or "/../" in f"/{name}/":
        return f"member {name!r} points outside the shard (absolute path or '..'); rename it inside the archive"
    if not member.isfile():
        kind = "a link" if member.issym() or member.islnk() else "not a regular file"
        return f"member {name!r} is {kind}; WebDataset shards hold regular files only"
    return None


def split_name(name: str) -> MemberName | None:
    """Key and extension of a sample file; None for names without an extension."""
    match = _SAMPLE_FILE.match(name.removeprefix("./"))
    if match is None:
        return None
    return MemberName(key=match.group(1), extension=match.group(2).lower())

"""Names users give to datasets, tags and branches: validated so nothing escapes the catalog root."""

from __future__ import annotations

import re

from .errors import InvalidNameError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_RESERVED = {"_catalog", "_trash"}


def check_name(name: object, what: str = "dataset") -> str:
    """Return `name` if it is a valid dataset/tag/branch name, else raise InvalidNameError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name or name in _RESERVED:
        raise InvalidNameError(
            f"invalid {what} name {name!r}: use 1-128 characters from letters, digits, '_', '-' and '.', "
            "starting with a letter or digit, without '..'"
        )
    return name

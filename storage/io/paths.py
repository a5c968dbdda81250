"""Validation of relative object paths: nothing may escape a store's root."""

from __future__ import annotations

from ..errors import InvalidNameError


def check_relative(path: str) -> str:
    """Return `path` if it is a clean relative posix path, else raise InvalidNameError."""
    if not path or "\x00" in path or path.startswith("/") or "\\" in path:
        raise InvalidNameError(f"invalid object path {path!r}: use a relative path without NUL or backslash")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidNameError(f"invalid object path {path!r}: empty, '.' or '..' segments are not allowed")
    return path


def join(prefix: str, path: str) -> str:
    """Join two relative paths (either may be empty)."""
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix.rstrip('/')}/{path}"

"""Loading a JSON source document with precise errors, and its content identity."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import SourceFormatError, TruncatedSourceError

# Deeper than any export nests (Label Studio: ~8 levels); well below Python's recursion limit, so code
# that walks or re-serializes a document (json.dumps, Arrow) cannot hit a RecursionError.
MAX_DEPTH = 256

# What may be left of a number or literal cut in the middle ("12.", "-", "1e", "tr", "fals", "nu").
_PARTIAL_TOKEN = re.compile(r"[-+.\deE]+|t(r(u)?)?|f(a(l(s)?)?)?|n(u(l)?)?")


@dataclass(frozen=True)
class JsonDocument:
    """A parsed JSON document, the name it is reported under, and the sha256 of its canonical form."""

    name: str
    value: Any
    sha256: str


def canonical_sha256(value: Any) -> str:
    """sha256 of `value` serialized canonically, so key order and whitespace do not change it."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_json(data: bytes | str, name: str) -> JsonDocument:
    """Parse `data` (UTF-8, optional BOM); raise TruncatedSourceError or SourceFormatError naming `name`."""
    text = _decode(data, name) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    if not text.strip():
        raise TruncatedSourceError(f"{name}: the file is empty; re-export or re-download it")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _decode_error(exc, text, name) from None
    except RecursionError:
        raise SourceFormatError(f"{name}: JSON nested too deeply to parse; this is not an export") from None
    check_depth(value, name)
    try:
        sha256 = canonical_sha256(value)
    except UnicodeEncodeError as exc:
        raise _surrogate_error(exc, name) from None
    return JsonDocument(name=name, value=value, sha256=sha256)


def check_depth(value: Any, name: str) -> None:
    """Raise SourceFormatError if `value` nests arrays and objects deeper than MAX_DEPTH."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SourceFormatError(
                f"{name}: JSON nested more than {MAX_DEPTH} levels deep; no source nests like this, fix the input"
            )
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def check_unicode(value: Any, name: str) -> None:
    """Raise SourceFormatError if a string in `value` holds an unpaired surrogate (a `\\udXXX` escape of
    half a character), which no UTF-8 column can store."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _surrogate_error(exc, name) from None


def _surrogate_error(exc: UnicodeEncodeError, name: str) -> SourceFormatError:
    context = exc.object[max(0, exc.start - 40) : exc.start].encode("utf-8", "replace").decode()
    return SourceFormatError(
        f"{name}: a string holds an unpaired UTF-16 surrogate (a \\u{ord(exc.object[exc.start]):04x} escape "
        f"without its pair) after {context!r}; that is half a character, not text: fix the value"
    )


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceFormatError(
            f"{name}: not UTF-8 text (invalid byte at offset {exc.start}); exports are UTF-8 JSON, "
            "re-export the file instead of converting it"
        ) from None


def _cut_short(exc: json.JSONDecodeError, text: str) -> bool:
    """Whether the parser failed only because the text ends early (a value, string or token still open)."""
    rest = text[exc.pos :].rstrip()
    return (
        not rest
        or exc.msg.startswith("Unterminated string")
        or (exc.msg.startswith("Invalid \\uXXXX") and len(rest) < 6)
        or _PARTIAL_TOKEN.fullmatch(rest) is not None
    )


def _decode_error(exc: json.JSONDecodeError, text: str, name: str) -> SourceFormatError:
    where = f"line {exc.lineno}, column {exc.colno}"
    if _cut_short(exc, text):
        return TruncatedSourceError(
            f"{name}: JSON ends in the middle of a value at {where} ({exc.msg}); the file is truncated, "
            "download or copy it again"
        )
    return SourceFormatError(f"{name}: invalid JSON at {where}: {exc.msg}; this is not an export file")

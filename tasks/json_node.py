"""Typed reads from parsed JSON that know where they are, so a bad field is reported precisely.

Connectors read source JSON only through `Node`: a missing or null field reads as None (sources leave
fields out freely), a field of the wrong type raises SourceFormatError naming the input, the JSON
pointer and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .errors import SourceFormatError


def escape_token(token: str | int) -> str:
    """A JSON pointer reference token (RFC 6901): `~` and `/` escaped."""
    return str(token).replace("~", "~0").replace("/", "~1")


def preview(value: Any, limit: int = 80) -> str:
    """`value` as JSON text of at most `limit` characters (cut ones end in "...").

    Only what is shown is rendered, without recursion: a wrong value may be huge, or nested deeper than
    the JSON encoder can recurse (it raised RecursionError on a 950-level list, instead of this error).
    """
    text, size = [], 0
    for piece in _pieces(value, limit):
        text.append(piece)
        size += len(piece)
        if size > limit:
            break
    shown = "".join(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


class _Text(str):
    """Punctuation between the values _pieces() renders."""


def _pieces(value: Any, limit: int) -> Iterator[str]:
    stack: list[Iterator[Any]] = [iter([value])]
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
        elif isinstance(item, _Text):
            yield item
        elif isinstance(item, dict):
            stack.append(_members(item))
        elif isinstance(item, list):
            stack.append(_items(item))
        else:  # a scalar: a long string is cut before it is encoded
            yield json.dumps(item[: limit + 1] if isinstance(item, str) else item, ensure_ascii=False, default=str)


_DONE = object()


def _members(obj: dict[Any, Any]) -> Iterator[Any]:
    yield _Text("{")
    for i, (key, value) in enumerate(obj.items()):
        yield _Text((", " if i else "") + json.dumps(str(key)[:80], ensure_ascii=False) + ": ")
        yield value
    yield _Text("}")


def _items(items: list[Any]) -> Iterator[Any]:
    yield _Text("[")
    for i, value in enumerate(items):
        if i:
            yield _Text(", ")
        yield value
    yield _Text("]")


@dataclass(frozen=True)
class Node:
    """A JSON value, its RFC 6901 pointer and a human description of the input (`where`)."""

    value: Any
    pointer: str
    where: str

    @classmethod
    def root(cls, value: Any, where: str) -> Node:
        return cls(value, "", where)

    def described(self, where: str) -> Node:
        """The same node, reported under `where` (e.g. once the task id is known)."""
        return replace(self, where=where)

    def error(self, problem: str) -> SourceFormatError:
        at = self.pointer or "/"
        return SourceFormatError(f"{self.where}: at {at}: {problem}")

    def expect(self, what: str) -> SourceFormatError:
        return self.error(f"expected {what}, got {preview(self.value)}; fix the value or re-export")

    def child(self, key: str | int) -> Node:
        """The member `key` of this object (or item `key` of this array); missing reads as null."""
        if isinstance(key, int):
            value = (
                self.value[key] if isinstance(self.value, list) and -len(self.value) <= key < len(self.value) else None
            )
        else:
            value = self.value.get(key) if isinstance(self.value, dict) else None
        return Node(value, f"{self.pointer}/{escape_token(key)}", self.where)

    def is_null(self) -> bool:
        return self.value is None

    def as_dict(self) -> dict[str, Any] | None:
        if self.value is None or isinstance(self.value, dict):
            return self.value
        raise self.expect("an object")

    def items(self) -> list[Node]:
        """Elements of an array; null reads as empty."""
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise self.expect("an array")
        return [self.child(i) for i in range(len(self.value))]

    def as_str(self) -> str | None:
        if self.value is None or isinstance(self.value, str):
            return self.value
        raise self.expect("a string")

    def as_id(self) -> str | None:
        """An identifier given as a string or an integer, as a string."""
        if isinstance(self.value, int) and not isinstance(self.value, bool):
            return str(self.value)
        if self.value is None or (isinstance(self.value, str) and self.value):
            return self.value
        raise self.expect("an id (integer or non-empty string)")

    def as_float(self) -> float | None:
        if self.value is None:
            return None
        if isinstance(self.value, float):
            return self.value
        if isinstance(self.value, int) and not isinstance(self.value, bool) and abs(self.value) < 2**1023:
            return float(self.value)
        raise self.expect("a number")

    def as_finite(self) -> float | None:
        """A number that can be used in geometry (no NaN or infinity)."""
        number = self.as_float()
        if number is not None and not math.isfinite(number):
            raise self.expect("a finite number")
        return number

    def as_int(self) -> int | None:
        if self.value is None:
            return None
        number = self.value
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        # Arrow stores integers in 64 bits; anything wider is a corrupt field, not data.
        if isinstance(number, int) and not isinstance(number, bool) and -(2**63) <= number < 2**63:
            return number
        raise self.expect("an integer")

    def as_bool(self) -> bool | None:
        if self.value is None or isinstance(self.value, bool):
            return self.value
        raise self.expect("true or false")

    def as_str_list(self) -> list[str] | None:
        """An array of strings; a single string reads as a one-element list (JSON_MIN writes both)."""
        if self.value is None:
            return None
        if isinstance(self.value, str):
            return [self.value]
        if isinstance(self.value, list) and all(isinstance(v, str) for v in self.value):
            return list(self.value)
        raise self.expect("a string or an array of strings")

    def as_timestamp(self) -> datetime | None:
        """An ISO 8601 timestamp, in UTC; one without a zone is taken as UTC."""
        text = self.as_str()
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise self.expect("an ISO 8601 timestamp") from None

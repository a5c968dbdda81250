"""Hostile inputs for the parser fuzz tests: structural mutations of the real fixtures, and tallies.

`mutated(doc)` draws 1-4 edits of a parsed JSON fixture at random places: drop a key or element,
replace a value with a hostile one (wrong type, null, huge or non-finite number, odd unicode,
path-like text), nest it deeply, duplicate it, or rename a key. `Tally` counts what a parser did with
the inputs (returned, rejected rows, raised a documented error, crashed) and records it for the
reliability table.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st
from report import FuzzResult, record

from storage import StorageError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T = TypeVar("T")

# Values a source should never send but might: names that look like paths, NUL, control and
# bidirectional characters, lone surrogates, huge text, dates out of range.
HOSTILE_TEXT = [
    "", " ", "..", "../../x", "/etc/passwd", "C:\\Windows", "a\x00b", "\x00", "\ud800", "\udfff", "\u202e",
    "\ufeff", "🚲" * 500, "é" * 10_000, "%00", "$image", "2026-13-45T99:99:99", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "NaN", "1e999", "<View/>", "null",
]  # fmt: skip
HOSTILE_NUMBERS = [
    0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**400), 1e308, -1e308, 5e-324,
    float("inf"), float("-inf"), float("nan"), 0.5, -0.0, True, False,
]  # fmt: skip


def json_keys(value: Any) -> set[str]:
    """Every object key in a JSON value (so random objects hit the fields parsers read)."""
    if isinstance(value, dict):
        return set(value).union(*(json_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(json_keys(v) for v in value))
    return set()


def hostile_values(keys: list[str]) -> st.SearchStrategy[Any]:
    """Scalars and small containers of the wrong kind, keyed with the fixture's own field names."""
    text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=12))
    scalars = st.one_of(st.none(), st.sampled_from(HOSTILE_NUMBERS), st.integers(), st.floats(), text)
    names = st.one_of(st.sampled_from(sorted(keys)), text) if keys else text
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=6
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _nest(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"value": value}
    return value


@st.composite
def mutated(draw: st.DrawFn, doc: Any, max_edits: int = 4) -> Any:
    """A deep copy of `doc` with 1 to `max_edits` structural edits at drawn places."""
    with deep_recursion():
        return _mutate(draw, copy.deepcopy(doc), max_edits)


def _mutate(draw: st.DrawFn, doc: Any, max_edits: int) -> Any:
    values = hostile_values(sorted(json_keys(doc)))
    for _ in range(draw(st.integers(1, max_edits))):
        path = draw(st.sampled_from(_paths(doc)))
        kind = draw(st.sampled_from(["drop", "replace", "replace", "nest", "duplicate", "rename"]))
        node = _get(doc, path)
        if kind == "nest":
            new = _nest(node, draw(st.integers(1, 1200)), draw(st.booleans()))
        elif kind == "replace" or not path:
            new = draw(values)
        else:
            new = node
        if not path:
            doc = new
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        if kind == "drop":
            del parent[last]
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(node))
        elif kind in ("duplicate", "rename") and isinstance(parent, dict):
            name = draw(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=8)))
            parent[name] = copy.deepcopy(node)
            if kind == "rename" and name != last:
                del parent[last]
        else:
            parent[last] = new
    return doc


def dump(value: Any) -> bytes:
    """JSON bytes as a file would hold them (lone surrogates escaped, NaN and Infinity allowed)."""
    with deep_recursion():
        return json.dumps(value, allow_nan=True).encode("ascii")


@contextmanager
def deep_recursion(limit: int = 20_000) -> Iterator[None]:
    """Let test code build and write inputs nested deeper than the parsers may recurse."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def read_json(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


class Zeros(io.RawIOBase):
    """A readable stream of `size` zero bytes, produced as read (the bomb is never in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


@dataclass
class Tally:
    """What one parser did with the fuzzed inputs."""

    parser: str
    inputs: int = 0
    ok: int = 0  # returned (possibly with rejected rows)
    rejected: int = 0  # rows or members returned as rejects with a reason
    raised: int = 0  # raised a documented error (the StorageError tree) with a message
    crashes: int = 0  # anything else: must stay 0

    def run(self, parse: Callable[[], T]) -> T | None:
        """`parse()`; None if it raised a documented error. Any other exception is a crash, re-raised."""
        self.inputs += 1
        try:
            result = parse()
        except StorageError as exc:
            if not str(exc).strip():
                self.crashes += 1
                raise AssertionError(f"{type(exc).__name__} without a message") from exc
            self.raised += 1
            return None
        except BaseException as exc:
            self.crashes += 1
            # Shown with the failure even when Hypothesis cannot print the input (one nested 950 levels made
            # its pretty printer recurse too deep, hiding this exception).
            print(f"{self.parser}: crash: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
            raise
        self.ok += 1
        return result


@contextmanager
def tallied(parser: str) -> Iterator[Tally]:
    """A tally for `parser`, recorded for the reliability table when the block ends (also on failure)."""
    tally = Tally(parser)
    try:
        yield tally
    finally:
        record("fuzz", FuzzResult(**vars(tally)))

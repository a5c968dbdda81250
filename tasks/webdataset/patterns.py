"""Shard lists from brace patterns, as WebDataset writes them: `train-{000000..000099}.tar`."""

from __future__ import annotations

import re

from ..errors import SourceError

_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def expand_pattern(pattern: str) -> list[str]:
    """Every path a pattern names, in order: `{a..b}` is a numeric range (zero-padded like `a`),
    `{x,y}` a list; several groups multiply. A pattern without braces is itself."""
    match = _GROUP.search(pattern)
    if match is None:
        if "{" in pattern or "}" in pattern:
            raise SourceError(f"shard pattern {pattern!r} has an unbalanced brace; write e.g. train-{{000..099}}.tar")
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [f"{head}{choice}{rest}" for choice in _choices(match.group(1), pattern) for rest in expand_pattern(tail)]


def _choices(group: str, pattern: str) -> list[str]:
    numeric = _RANGE.match(group)
    if numeric is None:
        if "," not in group:
            raise SourceError(
                f"shard pattern {pattern!r}: {{{group}}} is neither a range {{000..099}} nor a list {{a,b}}"
            )
        return group.split(",")
    start, end = numeric.group(1), numeric.group(2)
    if int(end) < int(start):
        raise SourceError(f"shard pattern {pattern!r}: the range {{{group}}} runs backwards; write {{{end}..{start}}}")
    return [str(n).zfill(len(start)) for n in range(int(start), int(end) + 1)]

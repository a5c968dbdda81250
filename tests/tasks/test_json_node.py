"""Node.expect's preview of a wrong value: short, JSON-like, and safe on huge or deeply nested values."""

from __future__ import annotations

import json
import sys

import pytest

from tasks.errors import SourceFormatError
from tasks.json_node import Node, preview


@pytest.mark.parametrize(
    "value",
    [None, 1, 2.5, "text", True, [], {}, [1, "a", None], {"a": [1, {"b": "c"}], "d": None}, {"k": "ünïcode ✓"}],
)
def test_a_short_value_previews_as_its_json(value: object) -> None:
    assert preview(value) == json.dumps(value, ensure_ascii=False)


def test_a_long_value_is_cut_at_the_limit() -> None:
    shown = preview({"tasks": list(range(10_000))}, limit=40)
    assert len(shown) == 40 and shown.endswith("...")
    assert shown.startswith('{"tasks": [0, 1, 2')
    assert preview("x" * 10**7, limit=20) == '"' + "x" * 16 + "..."


def test_nesting_deeper_than_the_encoder_recurses_is_previewed() -> None:
    deep: object = 1
    for _ in range(sys.getrecursionlimit() * 5):
        deep = [deep]
    assert preview(deep, limit=10) == "[[[[[[[..."
    error = Node.root(deep, "webhook payload").expect("a webhook payload object")
    assert isinstance(error, SourceFormatError) and "expected a webhook payload object, got [[[[" in str(error)

"""View plans: a source dataset, then map_batches / filter steps and lookup joins, serializable as JSON.

Every plan is keyed: its output rows carry the primary key of its left-most source dataset, so a
materialized view can be refreshed key by key from the sources' change logs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..errors import InvalidInputError
from ..formats import decode_schema, encode_schema


@dataclass(frozen=True)
class Source:
    """Rows of a dataset."""

    dataset: str


@dataclass(frozen=True)
class MapBatches:
    """fn(table) -> table, applied to batches of the child's rows; must keep the key columns."""

    child: Node
    fn: str
    version: str
    output_schema: pa.Schema | None
    record_fields: tuple[str, ...]


@dataclass(frozen=True)
class Filter:
    """Rows of the child for which fn(table) returns true (null counts as false)."""

    child: Node
    fn: str
    version: str


@dataclass(frozen=True)
class Join:
    """Left rows with the right row whose key equals the left's `on` columns (inner or left)."""

    left: Node
    right: Node
    on: tuple[str, ...]
    how: str


Node = Source | MapBatches | Filter | Join


def root(node: Node) -> Source:
    """The left-most source: its primary key is the plan's key."""
    while not isinstance(node, Source):
        node = node.left if isinstance(node, Join) else node.child
    return node


def sources(node: Node) -> list[str]:
    """Every dataset the plan reads, left-most first, without repeats."""
    if isinstance(node, Source):
        return [node.dataset]
    if isinstance(node, Join):
        return list(dict.fromkeys([*sources(node.left), *sources(node.right)]))
    return sources(node.child)


def to_json(node: Node) -> dict[str, Any]:
    """A JSON-able description of the plan."""
    if isinstance(node, Source):
        return {"op": "source", "dataset": node.dataset}
    if isinstance(node, MapBatches):
        return {
            "op": "map_batches",
            "child": to_json(node.child),
            "fn": node.fn,
            "version": node.version,
            "output_schema": encode_schema(node.output_schema) if node.output_schema is not None else None,
            "record_fields": list(node.record_fields),
        }
    if isinstance(node, Filter):
        return {"op": "filter", "child": to_json(node.child), "fn": node.fn, "version": node.version}
    return {
        "op": "join",
        "left": to_json(node.left),
        "right": to_json(node.right),
        "on": list(node.on),
        "how": node.how,
    }


def from_json(obj: dict[str, Any]) -> Node:
    """Inverse of to_json."""
    op = obj.get("op")
    if op == "source":
        return Source(str(obj["dataset"]))
    if op == "map_batches":
        schema = decode_schema(obj["output_schema"]) if obj.get("output_schema") else None
        return MapBatches(from_json(obj["child"]), obj["fn"], obj["version"], schema, tuple(obj["record_fields"]))
    if op == "filter":
        return Filter(from_json(obj["child"]), obj["fn"], obj["version"])
    if op == "join":
        return Join(from_json(obj["left"]), from_json(obj["right"]), tuple(obj["on"]), obj["how"])
    raise InvalidInputError(f"unknown view step {op!r}; this view was written by a newer Labelhouse")


def fingerprint(node: Node) -> str:
    """Changes whenever the plan or a function version changes (a full recompute is due)."""
    return hashlib.sha256(json.dumps(to_json(node), sort_keys=True).encode()).hexdigest()[:32]

"""The View builder: chain map_batches / filter / join on datasets, then materialize it in a catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import InvalidInputError
from . import functions
from .plan import Filter, Join, MapBatches, Node, Source, root

if TYPE_CHECKING:
    from ..dataset import Dataset


class View:
    """A keyed, lazily evaluated transformation of datasets."""

    def __init__(self, node: Node, datasets: dict[str, Dataset]) -> None:
        self.node = node
        self.datasets = datasets

    def __repr__(self) -> str:
        return f"View(sources={list(self.datasets)}, root={root(self.node).dataset!r})"

    @staticmethod
    def of(dataset: Dataset) -> View:
        """All rows of a dataset."""
        return View(Source(dataset.name), {dataset.name: dataset})

    def map_batches(
        self,
        fn: functions.UserFn | str,
        output_schema: pa.Schema | None = None,
        record_fields: Sequence[str] | None = None,
        version: str = "1",
    ) -> View:
        """Apply fn(pa.Table) -> table to batches of rows; it must keep the key columns, one row per key at most.

        `version` is part of the view's identity: change it when fn's behaviour changes, to force a full
        recompute on the next refresh.
        """
        if output_schema is not None and not isinstance(output_schema, pa.Schema):
            raise InvalidInputError("output_schema must be a pyarrow.Schema")
        node = MapBatches(self.node, functions.path_of(fn), str(version), output_schema, tuple(record_fields or ()))
        return View(node, self.datasets)

    def filter(self, fn: functions.UserFn | str, version: str = "1") -> View:
        """Keep rows for which fn(pa.Table) returns true (one boolean per row; null counts as false)."""
        return View(Filter(self.node, functions.path_of(fn), str(version)), self.datasets)

    def join(self, other: View | Dataset, on: Sequence[str], how: str = "inner") -> View:
        """Join each row to the row of `other` whose primary key equals this row's `on` columns."""
        right = other if isinstance(other, View) else View.of(other)
        if how not in ("inner", "left"):
            raise InvalidInputError(f"join how must be 'inner' or 'left', got {how!r}")
        if isinstance(on, str) or not on:
            raise InvalidInputError("join on= must be a non-empty list of column names")
        right_keys = right.datasets[root(right.node).dataset].primary_keys
        if len(on) != len(right_keys):
            raise InvalidInputError(
                f"join on={list(on)} must match the primary key {right_keys} of {root(right.node).dataset!r} "
                "column for column"
            )
        return View(Join(self.node, right.node, tuple(on), how), {**self.datasets, **right.datasets})

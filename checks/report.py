"""The outcome of checking a batch: per check, whether it passed; per failing row, its key and why.

A report only describes. Whether to commit, quarantine or fail is the caller's decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

RowReasons = Mapping[int, str]
"""A check's verdict on a batch: the positions of its failing rows, each with the reason."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    failing_count: int


@dataclass(frozen=True)
class FailingRow:
    """A row that failed one or more checks: its position in the batch, primary key and reasons."""

    row: int
    key: Any  # the primary key value; a tuple when the key has several columns
    reasons: tuple[tuple[str, str], ...]  # (check name, reason)

    @property
    def checks(self) -> tuple[str, ...]:
        return tuple(check for check, _ in self.reasons)


@dataclass(frozen=True)
class CheckReport:
    row_count: int
    results: tuple[CheckResult, ...]
    failing_rows: tuple[FailingRow, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failure_rate(self) -> float:
        """The share of rows failing at least one check (0.0 for an empty batch)."""
        return len(self.failing_rows) / self.row_count if self.row_count else 0.0

    def result(self, name: str) -> CheckResult:
        """The result of the check called `name`."""
        return next(r for r in self.results if r.name == name)

    def summary_table(self) -> pa.Table:
        """One row per check (name, passed, failing_count), e.g. for a Prefect table artifact."""
        return pa.Table.from_pylist(
            [vars(result) for result in self.results],
            schema=pa.schema([("name", pa.string()), ("passed", pa.bool_()), ("failing_count", pa.int64())]),
        )


def build_report(
    table: pa.Table, key_columns: Sequence[str], outcomes: Iterable[tuple[str, RowReasons]]
) -> CheckReport:
    """Assemble a report from each check's (name, failing rows with reasons) on `table`."""
    keys = row_keys(table, key_columns)
    results = []
    reasons: dict[int, list[tuple[str, str]]] = {}
    for name, failing in outcomes:
        results.append(CheckResult(name=name, passed=not failing, failing_count=len(failing)))
        for row, reason in failing.items():
            reasons.setdefault(row, []).append((name, reason))
    failing_rows = tuple(FailingRow(row, keys[row], tuple(reasons[row])) for row in sorted(reasons))
    return CheckReport(row_count=table.num_rows, results=tuple(results), failing_rows=failing_rows)


def row_keys(table: pa.Table, key_columns: Sequence[str]) -> list[Any]:
    """The primary key of every row: the value, or a tuple when the key has several columns."""
    columns = [table.column(name).to_pylist() for name in key_columns]
    return list(columns[0]) if len(columns) == 1 else list(zip(*columns, strict=True))

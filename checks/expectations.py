"""Great Expectations suites for the canonical tables, built in code and run on an ephemeral context.

GE validates the scalar columns (nulls, allowed values, ranges); nested geometry is left to the domain
checks. Each expectation becomes one named check whose failing rows are the rows GE reports.
"""

from __future__ import annotations

from typing import Any, Literal

import great_expectations as gx
import pyarrow as pa
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.core.expect_column_values_to_be_between import ExpectColumnValuesToBeBetween
from great_expectations.expectations.core.expect_column_values_to_be_in_set import ExpectColumnValuesToBeInSet
from great_expectations.expectations.core.expect_column_values_to_not_be_null import ExpectColumnValuesToNotBeNull

from storage.groundtruth import KINDS, MEDIA_TYPES, PROVENANCE_COLUMNS, STATUSES

from .report import RowReasons

TableName = Literal["items", "annotations", "predictions"]

_MAX_PIXELS = 2**31 - 1
_REQUIRED = {
    "items": ("id", "source_id", "media_type"),
    "annotations": ("id", "item_id", "submission_id", "status", "kind"),
    "predictions": ("id", "item_id", "submission_id", "status", "kind"),
}
_NON_NULL_PROVENANCE = tuple(c for c in PROVENANCE_COLUMNS if c != "flow_run_id")


def suite(table: TableName) -> gx.ExpectationSuite:
    """The expectation suite of a canonical table."""
    expectations: list[Any] = [
        ExpectColumnValuesToNotBeNull(column=column) for column in (*_REQUIRED[table], *_NON_NULL_PROVENANCE)
    ]
    if table == "items":
        expectations += [
            ExpectColumnValuesToBeInSet(column="media_type", value_set=list(MEDIA_TYPES)),
            *(_pixels(column) for column in ("width", "height")),
        ]
    else:
        statuses = ["prediction"] if table == "predictions" else [s for s in STATUSES if s != "prediction"]
        expectations += [
            ExpectColumnValuesToBeInSet(column="kind", value_set=list(KINDS)),
            ExpectColumnValuesToBeInSet(column="status", value_set=statuses),
            *(_pixels(column) for column in ("image_width", "image_height")),
        ]
    if table == "annotations":
        expectations.append(ExpectColumnValuesToBeBetween(column="lead_time_s", min_value=0))
    if table == "predictions":
        expectations.append(ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1))
    return gx.ExpectationSuite(name=f"labelhouse.{table}", expectations=expectations)


def _pixels(column: str) -> Any:
    return ExpectColumnValuesToBeBetween(column=column, min_value=1, max_value=_MAX_PIXELS)


def run_suite(table: pa.Table, expectation_suite: gx.ExpectationSuite) -> list[tuple[str, RowReasons]]:
    """Validate `table` against the suite: per expectation, its name and failing rows with reasons.

    An expectation that fails without naming rows (a missing column, an error) fails every row.
    """
    columns = sorted({e.column for e in expectation_suite.expectations if hasattr(e, "column")})
    frame = table.select([c for c in columns if c in table.column_names]).to_pandas()
    context = gx.get_context(mode="ephemeral", project_config=_context_config())
    batch = (
        context.data_sources.add_pandas("labelhouse")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    validation = batch.validate(expectation_suite, result_format={"result_format": "COMPLETE"})
    outcomes: list[tuple[str, RowReasons]] = []
    for result in validation.results:
        config = result.expectation_config
        assert config is not None  # GE fills it for every result of a suite run
        name = f"{config.type}({config.kwargs.get('column', '')})"
        rows = result.result.get("unexpected_index_list")
        failing: RowReasons
        if result.success:
            failing = {}
        elif rows is None or result.exception_info.get("raised_exception"):
            reason = result.exception_info.get("exception_message") or f"{name} failed for the whole batch"
            failing = dict.fromkeys(range(table.num_rows), reason)
        else:
            values = result.result.get("unexpected_list") or [None] * len(rows)
            failing = {int(row): _reason(config.type, config.kwargs, v) for row, v in zip(rows, values, strict=True)}
        outcomes.append((name, failing))
    return outcomes


def _reason(expectation: str, kwargs: dict[str, Any], value: Any) -> str:
    column = kwargs.get("column")
    if isinstance(value, float) and value.is_integer():  # pandas turns nullable integer columns into floats
        value = int(value)
    if expectation == "expect_column_values_to_not_be_null":
        return f"{column} is null"
    if expectation == "expect_column_values_to_be_in_set":
        return f"{column} {value!r} is not one of {kwargs.get('value_set')}"
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
    return f"{column} {value!r} is not {bounds}"


def _context_config() -> DataContextConfig:
    # In memory, no analytics, no progress bars: checks run inside flows and tests, not in a notebook.
    return DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )

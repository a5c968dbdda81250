"""Data-quality checks of batches: Great Expectations suites plus domain checks; never decides, never
imports Prefect or tasks."""

from .groundtruth import check_batch
from .labels import ClassMap
from .report import CheckReport, CheckResult, FailingRow, build_report, row_keys

__all__ = ["CheckReport", "CheckResult", "ClassMap", "FailingRow", "build_report", "check_batch", "row_keys"]

"""Views over datasets and their materialization with incremental refresh."""

from .lease import RefreshInProgressError
from .materialized import MaterializedView, RefreshStats
from .view import View

__all__ = ["MaterializedView", "RefreshInProgressError", "RefreshStats", "View"]

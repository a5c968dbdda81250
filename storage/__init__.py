"""Labelhouse storage engine: versioned datasets of Arrow tables with primary keys.

Never imports Prefect, checks, tasks or flows.
"""

from .arrow_cache import ArrowCacheOptions
from .catalog import Catalog
from .context import RecordCacheOptions
from .datafiles import WriteOptions
from .dataset import Dataset
from .errors import (
    BranchExistsError,
    CommitConflictError,
    CorruptDatasetError,
    DatasetExistsError,
    DatasetNotFoundError,
    InvalidInputError,
    InvalidNameError,
    MergeConflictError,
    PrimaryKeyConflictError,
    SchemaMismatchError,
    StorageError,
    StoreAccessError,
    TagExistsError,
    VersionNotFoundError,
)
from .maintenance import VacuumStats, ValidationReport
from .snapshot import Snapshot
from .vector_index import IndexRefreshStats, VectorIndex
from .views import MaterializedView, RefreshInProgressError, RefreshStats, View

__all__ = [
    "ArrowCacheOptions",
    "BranchExistsError",
    "Catalog",
    "CommitConflictError",
    "CorruptDatasetError",
    "Dataset",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "IndexRefreshStats",
    "InvalidInputError",
    "InvalidNameError",
    "MaterializedView",
    "MergeConflictError",
    "PrimaryKeyConflictError",
    "RecordCacheOptions",
    "RefreshInProgressError",
    "RefreshStats",
    "SchemaMismatchError",
    "Snapshot",
    "StorageError",
    "StoreAccessError",
    "TagExistsError",
    "VacuumStats",
    "ValidationReport",
    "VectorIndex",
    "VersionNotFoundError",
    "View",
    "WriteOptions",
]

"""`labelhouse datasets`: what the catalog holds."""

from __future__ import annotations

from storage import Catalog

from ..options import DEFAULT_CATALOG, CatalogOption, JsonOption
from ..output import emit
from ..records import dataset_record
from ..tables import records_table

COLUMNS = ["name", "primary_keys", "snapshot_id", "rows", "updated_at", "branches", "tags"]


def datasets(catalog: CatalogOption = DEFAULT_CATALOG, as_json: JsonOption = False) -> None:
    """List the datasets in the catalog with their head snapshot and row count."""
    cat = Catalog(catalog)
    records = [dataset_record(cat.dataset(name)) for name in cat.datasets()]
    emit(records, as_json, lambda: records_table(records, COLUMNS, f"Datasets in {cat.uri}"))

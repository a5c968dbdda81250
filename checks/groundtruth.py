"""All checks of a batch of one canonical ground-truth table, as one report."""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa

from storage.groundtruth import SPECS

from .expectations import TableName, run_suite, suite
from .geometry import geometry_outside_image, malformed_geometry
from .keys import key_problems
from .labels import ClassMap, labels_outside_class_map
from .references import dangling_relations, missing_items
from .report import CheckReport, RowReasons, build_report


def check_batch(
    table_name: TableName,
    table: pa.Table,
    *,
    item_ids: Collection[str] | None = None,
    class_map: ClassMap | None = None,
    relation_labels: Collection[str] | None = None,
    tolerance_px: float = 0.5,
) -> CheckReport:
    """Check a batch of `table_name` rows: the GE suite, key uniqueness and, for annotations and
    predictions, geometry and relations; item references when `item_ids` (the batch's and the
    dataset's items) is given, labels when `class_map` is given."""
    key_columns = SPECS[table_name].primary_keys
    outcomes: list[tuple[str, RowReasons]] = [("unique_primary_key", key_problems(table, key_columns))]
    outcomes += run_suite(table, suite(table_name))
    if table_name != "items":
        outcomes += [
            ("geometry_well_formed", malformed_geometry(table)),
            ("geometry_inside_image", geometry_outside_image(table, tolerance_px)),
            ("relations_resolve", dangling_relations(table)),
        ]
        if item_ids is not None:
            outcomes.append(("item_exists", missing_items(table, item_ids)))
        if class_map is not None:
            outcomes.append(("label_in_class_map", labels_outside_class_map(table, class_map, relation_labels)))
    return build_report(table, key_columns, outcomes)

"""Parse a Label Studio export file (JSON, snapshot or JSON_MIN) into canonical change sets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..changes import ChangeSet
from ..errors import SourceFormatError
from ..json_node import Node
from ..json_source import canonical_sha256, load_json
from ..provenance import Provenance
from .config import LabelingConfig
from .detect import ExportVariant, detect_variant
from .json_min import read_json_min
from .task_rows import read_task, rows_of_tasks

SOURCE = "label-studio"


@dataclass(frozen=True)
class ParsedExport:
    variant: ExportVariant
    idempotency_key: str  # commit with it: ingesting the same export (and config) again is a no-op
    changes: ChangeSet


def parse_export(
    data: bytes | str,
    *,
    name: str = "export.json",
    config: LabelingConfig | None = None,
    source: str = SOURCE,
    flow_run_id: str | None = None,
    whole_project: bool = True,
) -> ParsedExport:
    """Parse an export's content; `name` is how errors and `source_ref` refer to it.

    `whole_project` says the export holds every task of the project, so rows it lacks are stale
    (deleted in Label Studio); pass False for an export of a filtered view. `config` (the project's
    labeling config) is required for JSON_MIN and sharpens media detection for the others.
    Raises TruncatedSourceError, UnrecognizedSourceError or SourceFormatError, naming what to fix.
    """
    doc = load_json(data, name)
    variant = detect_variant(doc)
    provenance = Provenance(source=source, source_ref=f"{name}@sha256:{doc.sha256[:16]}", flow_run_id=flow_run_id)
    root = Node.root(doc.value, name)
    if variant is ExportVariant.JSON_MIN:
        if config is None:
            raise SourceFormatError(
                f"{name} is a JSON_MIN export, whose columns mix task data and labels; only the project's "
                "labeling config tells them apart: pass it (Settings > Labeling Interface > Code), or "
                "export the project as JSON instead"
            )
        tasks = read_json_min(root, config)
    else:
        tasks = [read_task(node) for node in root.items()]
    rows = rows_of_tasks(tasks, provenance, config)
    changes = dataclasses.replace(
        rows.changes(), whole_project=whole_project, replaced_items=tuple(row["id"] for row in rows.items)
    )
    key = _idempotency_key(doc.sha256, config, source, whole_project)
    return ParsedExport(variant=variant, idempotency_key=key, changes=changes)


def _idempotency_key(export_sha256: str, config: LabelingConfig | None, source: str, whole_project: bool) -> str:
    # What is committed depends on the config too (JSON_MIN columns, media types) and on the sync
    # scope: either changing is a new commit, the same content again is not.
    config_sha = canonical_sha256(dataclasses.asdict(config)) if config is not None else None
    return f"{source}:export:{canonical_sha256([export_sha256, config_sha, whole_project])}"

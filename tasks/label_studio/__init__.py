"""Label Studio connector: exports (JSON, snapshot, JSON_MIN), webhooks and labeling configs as plain
functions producing canonical ground-truth rows; the Prefect tasks that call them live elsewhere."""

from .config import Control, DataObject, LabelingConfig, parse_labeling_config
from .detect import ExportVariant, detect_variant
from .export import ParsedExport, parse_export
from .webhooks import map_webhook

__all__ = [
    "Control",
    "DataObject",
    "ExportVariant",
    "LabelingConfig",
    "ParsedExport",
    "detect_variant",
    "map_webhook",
    "parse_export",
    "parse_labeling_config",
]

"""Data out: COCO, Label Studio import JSON, Labelbox import NDJSON and training tables, from any version."""

from .coco import CocoExport, export_coco, to_coco
from .label_studio import LabelStudioImport, export_label_studio, to_label_studio
from .labelbox import LabelboxImport, export_labelbox, to_labelbox
from .selection import Selection, select
from .training import TrainingExport, export_training, read_provenance, training_table

__all__ = [
    "CocoExport",
    "LabelStudioImport",
    "LabelboxImport",
    "Selection",
    "TrainingExport",
    "export_coco",
    "export_label_studio",
    "export_labelbox",
    "export_training",
    "read_provenance",
    "select",
    "to_coco",
    "to_label_studio",
    "to_labelbox",
    "training_table",
]

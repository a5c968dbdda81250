"""A Labelbox export line's data row as a canonical item.

`data_row` (id, global_key, external_id, row_data, details), `media_attributes`, `attachments`,
`metadata_fields`, `embeddings` and each project's name and details land in the item; labels are
mapped elsewhere. Metadata becomes a JSON object by field name: strings, numbers and datetimes (as
ISO 8601 UTC) as given, an enum as its option's name (its option id when the export gives only the
id), a multi-select enum as a list of those. The verbatim line stays in `raw`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage.groundtruth import item_id

from ..json_node import Node
from ..label_studio.items import looks_like_uri
from ..media import content_type, media_type, pixels
from ..provenance import Provenance


@dataclass(frozen=True)
class DataRow:
    """What the labels of a data row need from it: its item id, pixel size and text."""

    item: str
    width: int | None
    height: int | None
    text: str | None  # inline text of a text data row, to check entity offsets against


def data_row_id(line: Node) -> str:
    """The Labelbox data row id; every export line has one."""
    data_row_id = line.child("data_row").child("id").as_id()
    if data_row_id is None:
        raise line.error("a line without data_row.id; this is not a Labelbox export v2 line, re-export it")
    return data_row_id


def item_row(line: Node, raw: str, provenance: Provenance) -> tuple[dict[str, Any], DataRow]:
    """The canonical item of one export line, and what its labels need."""
    source_id = data_row_id(line)
    data_row, media = line.child("data_row"), line.child("media_attributes")
    details = data_row.child("details")
    row_data = data_row.child("row_data").as_str()
    uri = row_data if looks_like_uri(row_data) else None
    mime = media.child("mime_type").as_str() or (content_type(uri) if uri else None)
    kind = media_type(mime)
    width, height = pixels(media.child("width").as_int()), pixels(media.child("height").as_int())
    data = {
        "global_key": data_row.child("global_key").as_str(),
        "external_id": data_row.child("external_id").as_str(),
        "row_data": row_data,
        "details": details.as_dict(),
        "media_attributes": media.as_dict(),
        "embeddings": _embeddings(line.child("embeddings")),
        "projects": {
            project: {"name": entry.child("name").as_str(), "project_details": entry.child("project_details").value}
            for project, entry in _projects(line)
        },
    }
    row = {
        "id": item_id(provenance.source, source_id),
        "source_id": source_id,
        "media_type": kind,
        "uri": uri,
        "width": width,
        "height": height,
        "data": json.dumps(data, ensure_ascii=False),
        "metadata": _json_or_none(_metadata(line.child("metadata_fields"))),
        "attachments": _attachments(line.child("attachments")),
        "created_at": details.child("created_at").as_timestamp(),
        "updated_at": details.child("updated_at").as_timestamp(),
        "blob": None,
        **provenance.columns(raw, line.pointer),
    }
    text = row_data if kind == "text" and uri is None else None
    return row, DataRow(item=row["id"], width=width, height=height, text=text)


def _json_or_none(value: dict[str, Any]) -> str | None:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else None


def _projects(line: Node) -> list[tuple[str, Node]]:
    projects = line.child("projects")
    return [(project, projects.child(project)) for project in (projects.as_dict() or {})]


def _embeddings(node: Node) -> dict[str, list[float]]:
    """Each embedding's first vector by name (Labelbox writes one vector per data row)."""
    vectors: dict[str, list[float]] = {}
    for embedding in node.items():
        name = embedding.child("name").as_str() or embedding.child("id").as_id() or embedding.pointer
        values = embedding.child("values").child(0).child("value")
        vectors[name] = [v.as_finite() or 0.0 for v in values.items()]
    return vectors


def _metadata(node: Node) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for field in node.items():
        name = field.child("schema_name").as_str() or field.child("name").as_str() or field.child("schema_id").as_id()
        if name is None:
            raise field.expect("a metadata field with a schema_name or schema_id")
        kind = (field.child("schema_kind").as_str() or "").lower()
        value = field.child("value")
        if isinstance(value.value, list):
            fields[name] = [_option(option) for option in value.items()]
        elif isinstance(value.value, dict):
            fields[name] = _option(value)
        elif "datetime" in kind and value.as_str():
            timestamp = value.as_timestamp()
            fields[name] = timestamp.isoformat() if timestamp else None
        else:
            fields[name] = value.value
    return fields


def _option(node: Node) -> str | None:
    if isinstance(node.value, dict):
        return node.child("schema_name").as_str() or node.child("schema_id").as_id()
    return node.as_id()


def _attachments(node: Node) -> list[dict[str, str]]:
    """Attachments that point at something; inline ones (raw text, HTML) stay in `raw`."""
    attachments = []
    for attachment in node.items():
        value = attachment.child("value").as_str()
        if looks_like_uri(value) and value is not None:
            name = attachment.child("name").as_str() or attachment.child("type").as_str() or "attachment"
            attachments.append({"name": name, "uri": value})
    return attachments

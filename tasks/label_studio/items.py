"""A Label Studio task's data as a canonical item: media type, main URI, attachments, text lookup."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import LabelingConfig

_MEDIA_BY_TAG = {
    "image": "image",
    "text": "text",
    "hypertext": "html",
    "audio": "audio",
    "audioplus": "audio",
    "video": "video",
    "timeseries": "timeseries",
    "paragraphs": "dialogue",
    "pdf": "pdf",
}
# Without a labeling config, the data field names Label Studio's templates use tell the media type.
_MEDIA_BY_FIELD = {"image": "image", "img": "image", "text": "text", "html": "html", "audio": "audio", "video": "video"}
_MEDIA_BY_EXTENSION = {
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp"), "image"),
    **dict.fromkeys(("wav", "mp3", "flac", "ogg", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "webm", "mov", "avi", "mkv"), "video"),
    "pdf": "pdf",
    "txt": "text",
    "html": "html",
}
_INLINE_MEDIA = frozenset({"text", "html", "dialogue", "timeseries"})
# Label Studio serves uploads under /data/...; everything else has a scheme (http, s3, gs, azure-blob).
_URI = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|/data/)\S*$")


def looks_like_uri(value: object) -> bool:
    return isinstance(value, str) and _URI.match(value) is not None


@dataclass(frozen=True)
class ItemMedia:
    media_type: str
    uri: str | None
    attachments: list[dict[str, str]]


def item_media(data: Mapping[str, Any], config: LabelingConfig | None) -> ItemMedia:
    """Media type, main URI and other URIs (attachments) of a task's `data`."""
    field, media_type = _main_field(data, config)
    value = data.get(field) if field is not None else None
    inline = media_type in _INLINE_MEDIA and not looks_like_uri(value)
    uri = value if isinstance(value, str) and not inline else None
    attachments = [
        {"name": name, "uri": other} for name, other in data.items() if name != field and looks_like_uri(other)
    ]
    return ItemMedia(media_type=media_type, uri=uri, attachments=attachments)


def text_lookup(data: Mapping[str, Any], config: LabelingConfig | None) -> dict[str, str]:
    """The text each object name shows (for placing spans), by object name."""
    # Templates name an object after its data field; the config, when known, says so exactly.
    fields = {name: name for name in data}
    if config is not None:
        fields.update({name: obj.value_key for name, obj in config.objects.items() if obj.value_key})
    return {name: data[field] for name, field in fields.items() if isinstance(data.get(field), str)}


def _main_field(data: Mapping[str, Any], config: LabelingConfig | None) -> tuple[str | None, str]:
    if config is not None:
        for obj in config.objects.values():
            if obj.value_key in data:
                return obj.value_key, _MEDIA_BY_TAG.get(obj.tag, "unknown")
    for field in data:
        if field.lower() in _MEDIA_BY_FIELD:
            return field, _MEDIA_BY_FIELD[field.lower()]
    for field, value in data.items():
        if looks_like_uri(value):
            extension = value.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
            return field, _MEDIA_BY_EXTENSION.get(extension, "unknown")
    return None, "unknown"

"""What a blob is, from its name and first bytes: content type, canonical media type, image size.

Image sizes come from the file header (PNG IHDR, GIF logical screen, JPEG start-of-frame), so a blob
is never decoded and no imaging library is needed. A header that is not understood gives no size,
never an error: a blob is stored whatever it holds.
"""

from __future__ import annotations

import mimetypes
import struct
from typing import NamedTuple

HEADER_BYTES = 64 * 1024
"""How much of a blob `image_size` may need: JPEG frames can follow large EXIF blocks."""

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
_MEDIA_BY_MAIN_TYPE = {"image": "image", "audio": "audio", "video": "video"}
_MEDIA_BY_TYPE = {"text/plain": "text", "text/html": "html", "application/pdf": "pdf"}
# JPEG start-of-frame markers (baseline, progressive, lossless...); C4, C8 and CC are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageSize(NamedTuple):
    width: int
    height: int


def content_type(name: str, head: bytes = b"") -> str:
    """The MIME type of a blob: its magic bytes first (names lie), then its extension."""
    for signature, mime in _SIGNATURES:
        if head.startswith(signature):
            return mime
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def media_type(mime: str | None) -> str:
    """The canonical media type (`image`, `text`, ... or `unknown`) of a MIME type."""
    if not mime:
        return "unknown"
    mime = mime.split(";", 1)[0].strip().lower()
    return _MEDIA_BY_TYPE.get(mime) or _MEDIA_BY_MAIN_TYPE.get(mime.split("/", 1)[0], "unknown")


def image_size(head: bytes) -> ImageSize | None:
    """Width and height from a PNG, GIF or JPEG header (the first `HEADER_BYTES`), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return _size(width, height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return _size(width, height)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> ImageSize | None:
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None  # lost sync: not a JPEG we understand
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", head[position + 2 : position + 4])
        if marker in _JPEG_SOF:
            if position + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[position + 5 : position + 9])
            return _size(width, height)
        position += 2 + length
    return None


def pixels(size: int | None) -> int | None:
    """A source's image width or height as the canonical int32 column holds it; None if it cannot be one.

    A zero, negative or larger-than-int32 size is the source's mistake; the row keeps no size (its raw
    JSON still has the value) rather than failing the whole batch on a type error.
    """
    return size if size is not None and 0 < size < 2**31 else None


def _size(width: int, height: int) -> ImageSize | None:
    return ImageSize(width, height) if width > 0 and height > 0 else None

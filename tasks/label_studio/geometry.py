"""Label Studio geometry to pixels, and text offsets to code points.

Label Studio stores image geometry in percent of the original image (`original_width` x
`original_height`), and span offsets as its frontend counted them, which for text outside the Basic
Multilingual Plane (emoji) may be UTF-16 code units. The canonical tables want pixels and code points.
"""

from __future__ import annotations

from typing import Any


def box_px(x: float, y: float, w: float, h: float, rotation: float, width: int, height: int) -> dict[str, Any]:
    """A percent box as a canonical pixel box; rotation (degrees, around the top-left corner) is kept."""
    sx, sy = width / 100.0, height / 100.0
    return {"x": x * sx, "y": y * sy, "w": w * sx, "h": h * sy, "rotation": rotation}


def point_px(x: float, y: float, width: int, height: int) -> dict[str, float]:
    """A percent point as a canonical pixel point."""
    return {"x": x * width / 100.0, "y": y * height / 100.0}


def code_point_span(text: str | None, start: int, end: int, expected: str | None) -> tuple[int, int]:
    """Offsets of `expected` in `text` in code points, given offsets that may count UTF-16 code units.

    When the text is unknown, or neither reading yields `expected`, the offsets are returned unchanged.
    """
    if text is None or expected is None or not 0 <= start <= end or text[start:end] == expected:
        return start, end
    encoded = text.encode("utf-16-le")
    try:
        if encoded[2 * start : 2 * end].decode("utf-16-le") != expected:
            return start, end
        cp_start = len(encoded[: 2 * start].decode("utf-16-le"))
    except UnicodeDecodeError:  # an offset inside a surrogate pair: not UTF-16 offsets either
        return start, end
    return cp_start, cp_start + len(expected)

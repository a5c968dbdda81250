"""COCO run-length encoding: the compressed counts string and the counts list, without pycocotools.

A COCO mask is a column-major (Fortran order) bitmap of `height` x `width` pixels, encoded as run
lengths that alternate background and foreground, starting with background. The compressed form
(`counts` as a string) stores each run as a variable-length group of 6-bit characters offset by 48,
and every run after the second as the difference to the run two before it (maskApi.c rleToString).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..errors import SourceFormatError


def encode_counts(counts: Sequence[int]) -> str:
    """The compressed counts string of a counts list."""
    out = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5  # arithmetic shift: negative differences end in -1
            more = value != -1 if chunk & 0x10 else value != 0
            out.append(chr((chunk | 0x20 if more else chunk) + 48))
    return "".join(out)


def decode_counts(text: str) -> list[int]:
    """The counts list of a compressed counts string; SourceFormatError if it is not one."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise SourceFormatError(f"compressed RLE counts end inside a run: {text[:40]!r}")
            chunk = ord(text[position]) - 48
            if not 0 <= chunk < 64:
                raise SourceFormatError(f"compressed RLE counts hold {text[position]!r}, not a counts character")
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        counts.append(value + counts[-2] if len(counts) > 2 else value)
    return counts


def mask_area(counts: Sequence[int]) -> int:
    """Foreground pixels: the sum of every second run, starting with the second."""
    return sum(counts[1::2])


def mask_counts(mask: npt.ArrayLike) -> list[int]:
    """The counts list of a 2-D mask (non-zero is foreground), as pycocotools encodes it."""
    flat = np.asarray(mask).ravel(order="F") != 0
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return [0, *runs] if flat.size and flat[0] else runs


def counts_mask(counts: Sequence[int], height: int, width: int) -> npt.NDArray[np.bool_]:
    """The `height` x `width` mask of a counts list; SourceFormatError if the runs do not cover it exactly."""
    runs = np.asarray(counts, np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise SourceFormatError(
            f"RLE counts cover {int(runs.sum())} pixels (or hold a negative run), "
            f"but the mask is {height}x{width} = {height * width}; re-encode the mask"
        )
    foreground = np.arange(runs.size) % 2 == 1
    mask: npt.NDArray[np.bool_] = np.repeat(foreground, runs).reshape((height, width), order="F")
    return mask


def counts_bbox(counts: Sequence[int], height: int) -> list[float]:
    """The [x, y, width, height] box around the foreground, as pycocotools' toBbox computes it (zeros if none)."""
    runs = np.asarray(counts[: len(counts) // 2 * 2], np.int64)  # a trailing background run adds nothing
    ends = np.cumsum(runs) - np.arange(runs.size) % 2  # first pixel of each foreground run, then its last
    if not runs[1::2].any():
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys = ends // height, ends % height
    top, bottom = int(ys.min()), int(ys.max())
    if (xs[0::2] < xs[1::2]).any():  # a run that wraps into the next column spans every row
        top, bottom = 0, height - 1
    left, right = int(xs.min()), int(xs.max())
    return [float(left), float(top), float(right - left + 1), float(bottom - top + 1)]

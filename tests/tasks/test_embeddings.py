"""tasks.embeddings: the text model's neighbours make sense, the built-in PNG decoder and image feature are
right and deterministic, and both plug into materialized views and vector indexes."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import embedding_udfs
import numpy as np
import pyarrow as pa
import pytest

from storage import Catalog
from tasks import embeddings as emb

FRAMES = pa.schema([pa.field("id", pa.int64(), nullable=False), ("caption", pa.string()), ("image", pa.binary())])


# ----- a PNG encoder with every filter type, independent of the decoder under test -----------------------


def _paeth(left: np.ndarray, above: np.ndarray, corner: np.ndarray) -> np.ndarray:
    p = left + above - corner
    pa_, pb, pc_ = np.abs(p - left), np.abs(p - above), np.abs(p - corner)
    return np.where((pa_ <= pb) & (pa_ <= pc_), left, np.where(pb <= pc_, above, corner))


def filtered_png(pixels: np.ndarray, color: int = 2, palette: np.ndarray | None = None) -> bytes:
    """An 8-bit PNG whose rows use filters 0..4 in turn (the decoder must undo each)."""
    height, width = pixels.shape[:2]
    raw = pixels.reshape(height, -1).astype(np.int32)
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]
    lines = []
    prev = np.zeros(raw.shape[1], np.int32)
    for y in range(height):
        kind = y % 5
        left = np.concatenate([np.zeros(bpp, np.int32), raw[y, :-bpp]])
        corner = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        predicted = [0, left, prev, (left + prev) // 2, _paeth(left, prev, corner)][kind]
        lines.append(bytes([kind]) + ((raw[y] - predicted) & 0xFF).astype(np.uint8).tobytes())
        prev = raw[y]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    plte = chunk(b"PLTE", palette.astype(np.uint8).tobytes()) if palette is not None else b""
    return (
        emb.PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
        + plte
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )


def random_pixels(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_png_decoder_undoes_every_filter() -> None:
    rgb = random_pixels(1, (11, 7, 3))
    assert np.array_equal(emb.decode_png(filtered_png(rgb)), rgb)
    rgba = random_pixels(2, (10, 5, 4))
    assert np.array_equal(emb.decode_png(filtered_png(rgba, color=6)), rgba[..., :3])
    gray = random_pixels(3, (6, 9))
    assert np.array_equal(emb.decode_png(filtered_png(gray, color=0)), np.repeat(gray[..., None], 3, axis=2))
    palette = random_pixels(4, (16, 3))
    indexes = random_pixels(5, (5, 5)) % 16
    assert np.array_equal(emb.decode_png(filtered_png(indexes, color=3, palette=palette)), palette[indexes])


def test_png_round_trip_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = random_pixels(6, (4, 3, 3))
    data = emb.encode_png(rgb)
    assert np.array_equal(emb.decode_png(data), rgb)
    taller = data[:20] + struct.pack(">I", 5) + data[24:]  # IHDR says 5 rows, the data holds 4
    with pytest.raises(ValueError, match="truncated or damaged"):
        emb.decode_png(taller)
    monkeypatch.setitem(sys.modules, "PIL", None)  # as on a machine without Pillow
    with pytest.raises(ValueError, match="PNG only; install Pillow"):
        emb.decode_image(b"\xff\xd8\xff\xe0 a jpeg")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1"])
def test_png_decoder_agrees_with_pillow(mode: str, tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / "x.png"
    image.fromarray(random_pixels(7, (13, 17, 3))).convert(mode).save(path, optimize=True)  # filters per row
    expected = np.asarray(image.open(path).convert("RGB"))
    assert np.array_equal(emb.decode_png(path.read_bytes()), expected)


def test_png_decoder_reads_16_bit_gray(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    samples = np.random.default_rng(8).integers(0, 65536, (6, 5), dtype=np.uint16)
    path = tmp_path / "x.png"
    image.fromarray(samples).save(path)
    high = (samples >> 8).astype(np.uint8)
    assert np.array_equal(emb.decode_png(path.read_bytes()), np.repeat(high[..., None], 3, axis=2))


# ----- the built-in image feature and the hook for your own model --------------------------------------------


def frames(n: int) -> pa.Table:
    colors = [(255, 0, 0), (0, 0, 255), (250, 10, 10), (10, 10, 250)]
    images = [emb.encode_png(np.full((8, 8, 3), colors[i % 4], np.uint8)) for i in range(n)]
    return pa.table(
        {"id": list(range(n)), "caption": [f"frame {i}" for i in range(n)], "image": [*images[:-1], None]},
        schema=FRAMES,
    )


def test_image_features_are_deterministic_and_keep_keys() -> None:
    table = frames(5)
    out = emb.image_features(table)
    assert out.schema == emb.embedding_schema(FRAMES)  # image bytes dropped, key and caption kept
    assert out.column("id").to_pylist() == [0, 1, 2, 3, 4]
    vectors = out.column("embedding").to_pylist()
    assert vectors[4] is None  # a null image gets a null embedding
    assert all(len(v) == emb.IMAGE_FEATURE_DIM for v in vectors[:4])
    assert emb.image_features(table).equals(out)
    red = np.array(vectors[0])
    assert red[emb.HIST_BINS - 1] == 1.0 and red[2 * emb.HIST_BINS] == 1.0  # all red high, all blue low


def test_image_views_and_index(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "lake")
    ds = cat.create_dataset("frames", FRAMES, primary_keys=["id"], record_fields=["image"])
    ds.append(frames(8))
    builtin = cat.materialize("frames_img", ds.map_batches(emb.image_features, emb.embedding_schema(FRAMES)))
    idx = cat.create_vector_index("frames_img_knn", builtin, "embedding", metric="cos")
    query = emb.color_features([emb.encode_png(np.full((8, 8, 3), (240, 5, 5), np.uint8))])[0]
    nearest = idx.search(query, k=4, exact=True).column("id").to_pylist()
    assert sorted(nearest) == [0, 2, 4, 6]  # the reddish frames
    mine = cat.materialize(
        "frames_mine", ds.map_batches(embedding_udfs.my_image_embeddings, emb.embedding_schema(FRAMES), version="m1")
    )
    assert mine.read_all().column("embedding").to_pylist()[0] == pytest.approx(
        embedding_udfs.byte_stats([frames(8).column("image")[0].as_py()])[0].tolist()
    )


def test_text_embeddings_needs_a_text_column() -> None:
    with pytest.raises(ValueError, match="no text column among"):
        emb.text_embeddings(pa.table({"id": [1], "title": ["x"]}))


# ----- the real text model ------------------------------------------------------------------------------------


@pytest.mark.slow  # loading torch and the model takes ~10-30 s on these machines
def test_text_neighbours_make_sense(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers", reason="needs the embeddings extra")
    captions = [
        "a cat on a sofa",
        "a kitten on a couch",
        "a truck on the road",
        "a lorry driving down a highway",
        "a bowl of fruit on a table",
        None,
    ]
    cat = Catalog(tmp_path / "lake")
    ds = cat.create_dataset("frames", FRAMES, primary_keys=["id"], record_fields=["image"])
    ds.append(pa.table({"id": range(len(captions)), "caption": captions, "image": [b""] * 6}, schema=FRAMES))
    mv = cat.materialize("captions", ds.map_batches(emb.text_embeddings, emb.embedding_schema(FRAMES)))
    vectors = mv.read_all().sort_by("id").column("embedding").to_pylist()
    assert [len(v) if v else None for v in vectors] == [emb.TEXT_DIM] * 5 + [None]
    idx = cat.create_vector_index("captions_knn", mv, "embedding", metric="cos")

    def nearest(text: str) -> list[int]:
        return idx.search(emb.embed_texts([text])[0], k=3, exact=True).column("id").to_pylist()

    assert nearest("a cat on a sofa")[:2] == [0, 1]  # itself, then the kitten on the couch
    assert nearest("a big truck")[:2] in ([2, 3], [3, 2])
    assert nearest("apples and oranges")[0] == 4
    assert emb.text_model() is emb.text_model()  # loaded once per process

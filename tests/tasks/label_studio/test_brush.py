"""Label Studio brush RLE: decoder and encoder against the documented bit layout, COCO RLE, parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pycocotools.mask as coco_mask
import pytest

from storage import Catalog
from tasks.coco.rle import counts_bbox, counts_mask, decode_counts, encode_counts, mask_counts
from tasks.commit import commit_changes
from tasks.errors import SourceFormatError
from tasks.label_studio import parse_export
from tasks.label_studio.brush import decode_brush, encode_brush

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "label-studio" / "export_json.json"
SHAPES = [(1, 1), (1, 7), (7, 1), (2, 3), (3, 2), (5, 9), (13, 4), (72, 128), (31, 17)]


# An independent reading and writing of the layout (brush.py's docstring), on strings of "0" and "1".


def reference_decode(rle: list[int]) -> list[int]:
    """Every value of the stream, read bit by bit."""
    bits = "".join(f"{byte:08b}" for byte in rle)
    position = 0

    def read(width: int) -> int:
        nonlocal position
        position += width
        return int(bits[position - width : position], 2)

    total, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    values: list[int] = []
    while len(values) < total:
        repeated = read(1)
        run = read(sizes[read(2)]) + 1
        values += [read(word)] * run if repeated else [read(word) for _ in range(run)]
    return values


def hand_encode(pixels: list[list[tuple[int, int, int, int]]], word: int, sizes: tuple[int, ...]) -> list[int]:
    """A stream as a frontend could write it: transparent pixels as repeats, drawn pixels as literal RGBA."""
    flat = [value for row in pixels for pixel in row for value in pixel]
    bits = f"{len(flat):032b}{word - 1:05b}" + "".join(f"{size - 1:04b}" for size in sizes)
    largest = max(range(4), key=lambda index: sizes[index])
    position = 0
    while position < len(flat):
        if flat[position : position + 4] == [0, 0, 0, 0]:
            run = 4
            while position + run < len(flat) and flat[position + run] == 0 and run < 1 << sizes[largest]:
                run += 1
            bits += f"1{largest:02b}{run - 1:0{sizes[largest]}b}{0:0{word}b}"
        else:
            run = 4
            index = next(i for i in range(4) if 1 << sizes[i] >= run)
            bits += f"0{index:02b}{run - 1:0{sizes[index]}b}" + "".join(f"{v:0{word}b}" for v in flat[position:][:4])
        position += run
    return pack(bits)


def pack(bits: str) -> list[int]:
    """A string of bits as bytes, padded with zero bits."""
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def masks() -> list[np.ndarray]:
    rng = np.random.default_rng(6)
    found = []
    for height, width in SHAPES:
        found += [np.zeros((height, width), bool), np.ones((height, width), bool)]
        found += [rng.random((height, width)) < density for density in (0.1, 0.5, 0.9)]
    stripes = np.zeros((300, 301), bool)  # runs longer than one record holds (2**16 values)
    stripes[:150] = True
    return [*found, stripes, ~stripes]


@pytest.mark.parametrize("mask", masks(), ids=lambda m: f"{m.shape[0]}x{m.shape[1]}-{int(m.sum())}")
def test_encode_decode_round_trip_matches_the_reference(mask):
    height, width = mask.shape
    rle = encode_brush(mask)
    assert all(0 <= byte <= 255 for byte in rle)
    values = reference_decode(rle)
    assert len(values) == height * width * 4
    assert values == list(np.repeat(np.where(mask.ravel(), 255, 0), 4))  # RGBA, row by row
    decoded = decode_brush(rle, width, height)
    assert decoded.shape == (height, width) and decoded.dtype == bool
    assert np.array_equal(decoded, mask)


def test_the_fixture_decodes_and_encodes_back_byte_for_byte():
    task = json.loads(FIXTURE.read_text(encoding="utf-8"))[0]
    brush = next(r for r in task["annotations"][0]["result"] if r["type"] == "brushlabels")
    rle, width, height = brush["value"]["rle"], brush["original_width"], brush["original_height"]
    mask = decode_brush(rle, width, height)
    expected = np.zeros((height, width), bool)
    expected[:20] = True  # "sky": the top 20 rows
    assert np.array_equal(mask, expected)
    assert np.array_equal(np.array(reference_decode(rle)[3::4]).reshape(height, width) > 0, expected)
    assert encode_brush(mask) == rle


@pytest.mark.parametrize(("word", "sizes"), [(8, (3, 4, 8, 16)), (8, (2, 5, 7, 12)), (12, (3, 3, 6, 9))])
def test_literal_runs_other_word_and_field_sizes(word, sizes):
    rng = np.random.default_rng(word)
    height, width = 5, 7
    drawn = rng.random((height, width)) < 0.5
    colors = rng.integers(1, 1 << word, (height, width, 3))
    alpha = rng.integers(1, 1 << word, (height, width))
    pixels = [
        [(*map(int, colors[y, x]), int(alpha[y, x])) if drawn[y, x] else (0, 0, 0, 0) for x in range(width)]
        for y in range(height)
    ]
    rle = hand_encode(pixels, word, sizes)
    assert np.array_equal(np.array(reference_decode(rle)[3::4]).reshape(height, width) > 0, drawn)
    assert np.array_equal(decode_brush(rle, width, height), drawn)


def test_a_pixel_drawn_without_alpha_is_background():
    rle = hand_encode([[(255, 0, 0, 0), (0, 0, 0, 9)]], 8, (3, 4, 8, 16))
    assert decode_brush(rle, 2, 1).tolist() == [[False, True]]


@pytest.mark.parametrize(
    ("rle", "width", "height", "problem"),
    [
        (encode_brush(np.ones((4, 6))), 7, 4, "a 7x4 RGBA image has 112"),
        (encode_brush(np.ones((4, 6))), 6, 5, "a 6x5 RGBA image has 120"),
        (encode_brush(np.eye(4))[:-3], 4, 4, "cut short"),
        (encode_brush(np.eye(4))[:5], 4, 4, "cut short"),
        ([], 1, 1, "cut short"),
        ([*encode_brush(np.eye(4)), 0, 0], 4, 4, "2 bytes after its last run"),
        ([*encode_brush(np.eye(4))[:-1], 300], 4, 4, "outside 0..255"),
    ],
)
def test_malformed_streams_are_refused(rle, width, height, problem):
    with pytest.raises(SourceFormatError, match=problem):
        decode_brush(rle, width, height)


def test_runs_past_the_declared_size_are_refused():
    header = f"{4:032b}{7:05b}" + "".join(f"{size - 1:04b}" for size in (3, 4, 8, 16))  # one pixel, 8-bit words
    rle = pack(header + "1" + "00" + "111" + "11111111")  # a run of 8 values
    with pytest.raises(SourceFormatError, match="more than the 4 values"):
        decode_brush(rle, 1, 1)


@pytest.mark.parametrize("mask", masks()[:-2], ids=lambda m: f"{m.shape[0]}x{m.shape[1]}-{int(m.sum())}")
def test_coco_counts_match_pycocotools(mask):
    height, width = mask.shape
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = mask_counts(mask)
    assert encode_counts(counts) == encoded["counts"].decode()
    assert np.array_equal(counts_mask(counts, height, width), mask)
    assert counts_bbox(counts, height) == coco_mask.toBbox(encoded).tolist()
    assert sum(counts[1::2]) == int(coco_mask.area(encoded))


def test_counts_that_do_not_cover_the_mask_are_refused():
    with pytest.raises(SourceFormatError, match="cover 5 pixels"):
        counts_mask([2, 3], 2, 3)
    with pytest.raises(SourceFormatError, match="negative"):
        counts_mask([8, -2], 2, 3)


# Parsing: brush regions become COCO RLE; one that does not decode is a rejected row.


def _task(task_id: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": task_id,
        "data": {"image": f"https://example.com/{task_id}.jpg"},
        "annotations": [{"id": task_id * 10, "completed_by": 1, "result": results}],
    }


def _brush(region: str, rle: Any, width: int, height: int, label: str = "sky") -> dict[str, Any]:
    return {
        "id": region,
        "from_name": "brush",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": rle, "brushlabels": [label]},
    }


def test_brush_regions_are_stored_as_compressed_coco_rle():
    mask = np.zeros((9, 14), bool)
    mask[2:7, 3:12] = True
    mask[0, 13] = True
    rows = parse_export(json.dumps([_task(1, [_brush("b1", encode_brush(mask), 14, 9)])])).changes.annotations
    row = rows.to_pylist()[0]
    assert (row["kind"], row["labels"], row["image_width"], row["image_height"]) == ("mask", ["sky"], 14, 9)
    stored = row["mask"]
    assert (stored["format"], stored["width"], stored["height"], stored["rle"]) == ("coco-rle-compressed", 14, 9, None)
    assert stored["rle_string"] == coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
    assert np.array_equal(counts_mask(decode_counts(stored["rle_string"]), 9, 14), mask)


def test_a_malformed_brush_rle_is_a_rejected_row_naming_task_and_region(tmp_path):
    good = encode_brush(np.eye(6, 8))
    results = [
        _brush("ok", good, 8, 6),
        _brush("wrong-size", good, 8, 7),  # drawn on a 8x6 image, said to be 8x7
        _brush("cut", good[:-4], 8, 6),
        _brush("not-bytes", ["a", 1], 8, 6),
        {"id": "car1", "from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": 8,
         "original_height": 6, "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rectanglelabels": ["car"]}},
    ]  # fmt: skip
    parsed = parse_export(json.dumps([_task(7, results)]), name="brushes.json")
    catalog = Catalog(tmp_path / "lake")
    outcome = commit_changes(catalog, "p", parsed.changes, idempotency_key=parsed.idempotency_key, max_failure_rate=1.0)
    assert (outcome.tables["annotations"].good_rows, outcome.tables["annotations"].rejected_rows) == (2, 3)
    kept = catalog.dataset("p__annotations").read_all().to_pylist()
    assert sorted(r["region_id"] for r in kept) == ["car1", "ok"]
    rejects = catalog.dataset("p__annotations__rejects").read_all()
    reasons = {
        json.loads(r["row"])["region_id"]: r["reason"]
        for r in rejects.filter(pc.field("check") == "geometry_well_formed").to_pylist()
    }
    assert reasons.keys() == {"wrong-size", "cut", "not-bytes"}
    for region in ("wrong-size", "cut"):
        assert f"label-studio:7/annotation:70/{region}" in reasons[region]  # the task id and the region id
        assert "does not decode" in reasons[region]
    assert "8x7 image" in reasons["wrong-size"]
    assert "label-studio:7/annotation:70/not-bytes" in reasons["not-bytes"]
    assert "without run-length data" in reasons["not-bytes"]
    raw = json.loads(json.loads(rejects.filter(pc.field("reason") == reasons["cut"]).to_pylist()[0]["row"])["raw"])
    assert raw[0]["value"]["rle"] == good[:-4]  # the region as it came, to fix and ingest again

"""Data files: the compression codec of each column, and datasets written before float_compression existed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from storage import Catalog, WriteOptions

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("box", pa.struct([("x", pa.float32()), ("note", pa.string())])),
    ]
)
ROWS = {
    "id": [1, 2, 3],
    "label": ["cat", "dog", "cat"],
    "score": [0.5, 0.25, 0.125],
    "embedding": [[0.5, 0.25], [0.75], []],
    "box": [{"x": 1.0, "note": "a"}, {"x": 2.0, "note": None}, None],
}


def _codecs(catalog: Catalog, name: str) -> dict[str, str]:
    """Codec of every leaf column of the dataset's (only) data file."""
    ds = catalog.dataset(name)
    (path,) = ds.manifest().column("path").to_pylist()
    meta = pq.read_metadata(Path(catalog.uri) / name / path).row_group(0)
    return {meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)}


def test_floats_get_the_light_codec_and_no_leaf_is_left_uncompressed(catalog: Catalog) -> None:
    catalog.create_dataset("frames", SCHEMA, ["id"]).append(ROWS)
    codecs = _codecs(catalog, "frames")
    floats = {"score", "embedding.list.element", "box.x"}
    assert {c for c, codec in codecs.items() if codec == "LZ4"} == floats
    assert all(codec == "ZSTD" for c, codec in codecs.items() if c not in floats)
    assert catalog.dataset("frames").read_all().sort_by("id").to_pydict() == ROWS


def test_float_compression_none_uses_one_codec_for_every_column(catalog: Catalog) -> None:
    options = WriteOptions(compression="snappy", float_compression=None)
    catalog.create_dataset("frames", SCHEMA, ["id"], options=options).append(ROWS)
    assert set(_codecs(catalog, "frames").values()) == {"SNAPPY"}


def test_a_dataset_whose_metadata_predates_float_compression_opens_and_writes(catalog: Catalog) -> None:
    catalog.create_dataset("frames", SCHEMA, ["id"]).append(ROWS)
    meta_path = Path(catalog.uri) / "frames" / "_meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["options"]["float_compression"]
    meta_path.write_text(json.dumps(meta))
    reopened = Catalog(catalog.uri).dataset("frames")
    reopened.upsert({**ROWS, "id": [1, 2, 4]})
    assert reopened.count() == 4

"""Looking at a dataset directory without the engine, so tests do not trust the code they check.

The layout read here is the on-disk format: `_log/<id>.json` entries naming a manifest (Parquet with
`path` and `dv` columns) and a change log, plus the roll-up change logs its summary names under
`rollups`; data files, deletion vectors, manifests and change logs live
under `data/`, `dv/`, `manifests/` and `changes/`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from storage import Dataset

CONTENT_DIRS = ("data", "dv", "manifests", "changes")


def files_under(root: Path, dirs: tuple[str, ...] = CONTENT_DIRS) -> set[str]:
    """Every file below the given subdirectories of `root`, as posix paths relative to `root`."""
    out: set[str] = set()
    for d in dirs:
        for dirpath, _dirs, names in os.walk(root / d):
            out.update(Path(dirpath, n).relative_to(root).as_posix() for n in names)
    return out


def all_files(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below `root` (to prove that nothing was written or rewritten)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def log_entries(root: Path) -> list[dict[str, object]]:
    """The parsed `_log` entries, oldest first."""
    return [json.loads(p.read_bytes()) for p in sorted((root / "_log").glob("*.json"))]


def referenced_files(root: Path) -> set[str]:
    """Files some snapshot references: its manifest, change log and roll-ups, and the manifest's data files
    and DVs."""
    out: set[str] = set()
    for entry in log_entries(root):
        manifest, changes = entry.get("manifest"), entry.get("changes")
        if isinstance(changes, str):
            out.add(changes)
        summary = entry.get("summary")
        if isinstance(summary, dict):
            out.update(summary.get("rollups", {}).values())
        if isinstance(manifest, str):
            out.add(manifest)
            table = pq.read_table(root / manifest, columns=["path", "dv"])
            out.update(p for p in table.column("path").to_pylist())
            out.update(p for p in table.column("dv").to_pylist() if p)
    return out


def unreferenced_files(root: Path) -> set[str]:
    """Files under the content directories that no snapshot references: what vacuum() must remove."""
    return files_under(root) - referenced_files(root)


@contextmanager
def nothing_written(ds: Dataset, root: Path) -> Iterator[None]:
    """Assert that the block (expected to fail) adds no snapshot and leaves every file as it was."""
    ids_before = ds.versions().column("snapshot_id").to_pylist()
    files_before = all_files(root)
    yield
    assert ds.versions().column("snapshot_id").to_pylist() == ids_before, "a failed write added a snapshot"
    after = all_files(root)
    assert after == files_before, f"a failed write left files behind: {sorted(set(after) - set(files_before))}"

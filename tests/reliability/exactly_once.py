"""The audit after a process fault: every source row exactly once, every dataset valid, no garbage left.

Garbage is anything on disk a live snapshot does not need once vacuum (grace 0) has run: data, manifest
or change files of commits that never published, temporary files of interrupted writes, and staged
batches (`$LABELHOUSE_STAGING_DIR/labelhouse-staging/<run>`) of flow runs that were killed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from storage import Catalog, CorruptDatasetError
from storage.formats import TMP_PREFIX
from storage.maintenance import referenced

# Files a dataset keeps beside what its snapshots reference: its metadata and its log and refs.
_KEPT_DIRS = ("_log", "_refs")
_KEPT_FILES = ("_meta.json",)


@dataclass(frozen=True)
class Audit:
    """What a catalog holds against what the source says it should."""

    rows: int
    rows_lost: int
    rows_duplicated: int
    rows_unexpected: int
    applied_twice: int  # commits beyond one per change (a change the source sent once, committed again)
    problems: list[str] = field(default_factory=list)  # validate() problems, garbage, leftover staging

    @property
    def ok(self) -> bool:
        return not (self.rows_lost or self.rows_duplicated or self.rows_unexpected or self.applied_twice) and not (
            self.problems
        )


def audit(
    catalog: str,
    expected: Mapping[str, Collection[str]],
    commits: Mapping[str, int],
    staging: Path | None = None,
) -> Audit:
    """Compare each dataset's `id`s with `expected` (dataset -> ids) and its keyed commits with `commits`
    (dataset -> how many changes the source sent), validate and vacuum every dataset of the local
    `catalog`, then list what is left that nothing needs."""
    cat = Catalog(catalog)
    lost = duplicated = unexpected = twice = 0
    for name, wanted_commits in commits.items():
        twice += max(0, len(keyed_commits(cat, name)) - wanted_commits)
    for name, keys in expected.items():
        ids = Counter(cat.dataset(name).read_all(columns=["id"])["id"].to_pylist()) if name in cat else Counter()
        wanted = set(keys)
        lost += len(wanted - ids.keys())
        duplicated += sum(n - 1 for n in ids.values())
        unexpected += len(ids.keys() - wanted)
    problems: list[str] = []
    for name in cat.datasets():
        dataset = cat.dataset(name)
        try:
            problems += [f"{name}: {p}" for p in dataset.validate().problems]
        except CorruptDatasetError as exc:
            problems.append(f"{name}: {exc}")
        dataset.vacuum(grace_period=timedelta(0))
        problems += [f"{name}: garbage {path}" for path in _garbage(Path(catalog) / name, referenced(dataset._ctx))]
    if staging is not None:
        root = staging / "labelhouse-staging"
        problems += [f"staged batches left: {p}" for p in sorted(root.iterdir())] if root.exists() else []
    return Audit(sum(len(k) for k in expected.values()), lost, duplicated, unexpected, twice, problems)


def keyed_commits(cat: Catalog, name: str) -> list[str]:
    """The idempotency keys of a dataset's commits, oldest first (every flow commit carries one)."""
    if name not in cat:
        return []
    ctx = cat.dataset(name)._ctx
    ctx.log.refresh()
    return [e.idempotency_key for e in ctx.log.entries() if e.idempotency_key is not None]


def _garbage(root: Path, needed: set[str]) -> list[str]:
    out = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        path = file.relative_to(root).as_posix()
        kept = path in _KEPT_FILES or (path.split("/", 1)[0] in _KEPT_DIRS and not file.name.startswith(TMP_PREFIX))
        if not kept and path not in needed:
            out.append(path)
    return out

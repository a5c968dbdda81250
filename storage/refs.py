"""Tags: names for snapshots, kept as an append-only chain of small files per name (put-if-absent)."""

from __future__ import annotations

from typing import Any

from .errors import TagExistsError
from .formats import FORMAT_VERSION, REFS_DIR, check_format_version, decode_json, encode_json, utcnow
from .io import ObjectStore, put_once
from .naming import check_name


class Tags:
    """The tags of one dataset. Each change appends `_refs/tags/<name>/<seq>.json`; the newest one wins."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def _dir(self, name: str) -> str:
        return f"{REFS_DIR}/tags/{check_name(name, 'tag')}"

    def _latest(self, name: str) -> tuple[int, dict[str, Any] | None]:
        seqs = sorted(
            int(i.path.rsplit("/", 1)[-1].split(".")[0])
            for i in self._store.list_files(self._dir(name))
            if i.path.endswith(".json")
        )
        if not seqs:
            return -1, None
        path = f"{self._dir(name)}/{seqs[-1]:010d}.json"
        obj = decode_json(self._store.read_bytes(path), f"{self._store.uri}/{path}")
        check_format_version(obj, path)
        return seqs[-1], obj

    def get(self, name: str) -> int | None:
        """The snapshot a tag names, or None."""
        _seq, obj = self._latest(name)
        return None if obj is None or obj.get("deleted") else int(obj["snapshot_id"])

    def _append(self, name: str, body: dict[str, Any], expect_seq: int) -> bool:
        record = {"format_version": FORMAT_VERSION, "at": utcnow().isoformat(), **body}
        return put_once(self._store, f"{self._dir(name)}/{expect_seq + 1:010d}.json", encode_json(record))

    def set(self, name: str, snapshot_id: int, force: bool = False) -> None:
        """Point `name` at a snapshot; an existing tag is only moved with force=True."""
        while True:
            seq, obj = self._latest(name)
            if obj is not None and not obj.get("deleted"):
                if int(obj["snapshot_id"]) == snapshot_id:
                    return
                if not force:
                    raise TagExistsError(
                        f"tag {name!r} already names snapshot {obj['snapshot_id']}; tags are immutable: "
                        "pass force=True to move it, or choose another name"
                    )
            if self._append(name, {"snapshot_id": snapshot_id}, seq):
                return

    def delete(self, name: str) -> bool:
        """Remove a tag; False if it did not exist."""
        while True:
            seq, obj = self._latest(name)
            if obj is None or obj.get("deleted"):
                return False
            if self._append(name, {"deleted": True}, seq):
                return True

    def all(self) -> dict[str, int]:
        """Every live tag and its snapshot id."""
        names = {i.path.split("/")[2] for i in self._store.list_files(f"{REFS_DIR}/tags") if i.path.endswith(".json")}
        out = {}
        for name in sorted(names):
            sid = self.get(name)
            if sid is not None:
                out[name] = sid
        return out

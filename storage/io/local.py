"""Local-disk object store: fsync'ed writes, put-if-absent by hard link (never rename-over)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid

import pyarrow.fs as pafs

from .base import FileInfo, ObjectStore
from .paths import check_relative, join

_TMP_PREFIX = ".tmp-"


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_path(store: ObjectStore, path: str) -> str:
    """A fresh local file name to write the object `path` into before `store.put_file(path, <it>)`.

    For a local store it is a temporary name beside the object's final one, so put_file renames it into
    place instead of copying it, and a crash leaves only an unreferenced file that vacuum() removes; for
    other stores it is in the system's temp directory. The caller removes it if it still exists afterwards.
    """
    local = store.local_path(path)
    if local is None:
        fd, tmp = tempfile.mkstemp(suffix=f"-{os.path.basename(path)}")
        os.close(fd)
        return tmp
    tmp, fd = _open_new(os.path.dirname(local))
    os.close(fd)  # the empty file holds the directory until the caller's writer replaces its contents
    return tmp


# Attempts at creating a file in a directory that concurrent deletes keep removing (one retry is rare).
_CREATE_ATTEMPTS = 10


def _open_new(directory: str) -> tuple[str, int]:
    """A new temporary file in `directory` (made if missing), open for writing: its path and descriptor.

    delete() removes the directories it empties, so another writer's delete can remove `directory` between
    making it and creating the file in it (or, inside os.makedirs, between its mkdir finding the directory
    and its check that it is one: FileExistsError); then it is made again. Once the file exists the
    directory is not empty, and stays while the file is written and moved to its final name beside it.
    """
    for _ in range(_CREATE_ATTEMPTS - 1):
        with contextlib.suppress(FileNotFoundError, FileExistsError):
            return _create_in(directory)
    return _create_in(directory)


def _create_in(directory: str) -> tuple[str, int]:
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


class LocalStore:
    """An ObjectStore over a directory."""

    def __init__(self, root: str) -> None:
        self._root = os.path.abspath(root)

    @property
    def uri(self) -> str:
        return self._root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other._root == self._root

    def __hash__(self) -> int:
        return hash(("local", self._root))

    def child(self, prefix: str) -> ObjectStore:
        return LocalStore(self._abs(prefix))

    def _abs(self, path: str) -> str:
        return os.path.join(self._root, *check_relative(path).split("/"))

    def _write_tmp(self, final: str, data: bytes) -> str:
        tmp, fd = _open_new(os.path.dirname(final))
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def read_bytes(self, path: str) -> bytes:
        with open(self._abs(path), "rb") as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        final = self._abs(path)
        tmp = self._write_tmp(final, data)
        # Objects written here have unique names, so this rename never replaces a visible object.
        os.replace(tmp, final)
        _fsync(os.path.dirname(final))

    def put_file(self, path: str, local_file: str) -> int:
        final = self._abs(path)
        directory = os.path.dirname(final)
        if os.path.dirname(os.path.abspath(local_file)) == directory:
            tmp = local_file  # staged beside its final name (staging_path): moved, not copied
        else:
            tmp, fd = _open_new(directory)
            os.close(fd)
            try:
                shutil.copyfile(local_file, tmp)
            except BaseException:
                os.unlink(tmp)
                raise
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(directory)
        return os.path.getsize(final)

    def local_path(self, path: str) -> str | None:
        return self._abs(path)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        final = self._abs(path)
        tmp = self._write_tmp(final, data)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _fsync(os.path.dirname(final))
        return True

    def exists(self, path: str) -> bool:
        return os.path.exists(self._abs(path))

    def size(self, path: str) -> int:
        return os.stat(self._abs(path)).st_size

    def list_files(self, prefix: str = "") -> list[FileInfo]:
        base = self._abs(prefix) if prefix else self._root
        out: list[FileInfo] = []
        for dirpath, _dirs, files in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self._root).replace(os.sep, "/")
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                rel = name if rel_dir == "." else join(rel_dir, name)
                out.append(FileInfo(rel, st.st_size, st.st_mtime))
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        base = self._abs(prefix) if prefix else self._root
        try:
            return sorted(e.name for e in os.scandir(base) if e.is_dir())
        except FileNotFoundError:
            return []

    def delete(self, path: str) -> None:
        full = self._abs(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(full)
        # Leave no empty directories behind so a dropped dataset disappears entirely.
        parent = os.path.dirname(full)
        while parent != self._root and parent.startswith(self._root):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    def arrow_fs(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), self._root

"""What a user of a plain file format does for mutations and versions: rewrite, publish, keep the copies.

Plain Parquet and Hugging Face `datasets` have no commits. Each mutation here reads the current version in
full, writes a complete new copy into a fresh directory and publishes it by appending the directory's name
to `versions.log` (one line per version; the last line is current). Old copies stay readable, which is how
such users keep versions. Two writers racing both read the same version and the later publish wins: the
other's rows are lost, which is exactly what W7 is there to show.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .base import KEY, Peer

LOG = "versions.log"


class RewritePeer(Peer):
    """A copy-per-version engine; subclasses say how one copy is written and read."""

    def write_copy(self, directory: str, data: pa.Table) -> None:
        """Write a whole table into a new directory."""
        raise NotImplementedError

    def read_copy(self, directory: str, index_only: bool = False) -> pa.Table:
        """Read a whole copy: all columns, or with `index_only` all but the blob column."""
        raise NotImplementedError

    # versions -----------------------------------------------------------------------------------------------
    def _log(self, table: str) -> list[str]:
        with open(os.path.join(self.path(table), LOG)) as f:
            return [line.strip() for line in f if line.strip()]

    def current(self, table: str) -> str:
        """The directory of the current version."""
        return os.path.join(self.path(table), self._log(table)[-1])

    def _publish(self, table: str, data: pa.Table) -> None:
        name = f"v-{uuid.uuid4().hex}"
        self.write_copy(os.path.join(self.path(table), name), data)
        # O_APPEND: concurrent publishers each add their line whole; the last one wins.
        fd = os.open(os.path.join(self.path(table), LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{name}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def create(self, table: str, data: pa.Table, blob_columns: Sequence[str]) -> None:
        os.makedirs(self.path(table), exist_ok=True)
        self._publish(table, data)

    def upsert(self, table: str, rows: pa.Table) -> None:
        old = self.read_copy(self.current(table))
        kept = old.filter(pc.invert(pc.is_in(old.column(KEY), value_set=rows.column(KEY))))
        self._publish(table, pa.concat_tables([kept, rows.cast(old.schema)]))

    def append(self, table: str, rows: pa.Table) -> None:
        old = self.read_copy(self.current(table))
        self._publish(table, pa.concat_tables([old, rows.cast(old.schema)]))

    def overwrite(self, table: str, rows: pa.Table) -> None:
        self._publish(table, rows)

    def version(self, table: str) -> Any:
        return len(self._log(table)) - 1

    def read_version(self, table: str, version: Any) -> pa.Table:
        return self.read_copy(os.path.join(self.path(table), self._log(table)[version]), index_only=True)

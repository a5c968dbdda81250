"""Where a batch of rows came from: written into every canonical row's provenance columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Provenance:
    """`source` names the connector (or instance), `source_ref` the export, API call or webhook."""

    source: str
    source_ref: str
    flow_run_id: str | None = None

    def columns(self, raw: str, pointer: str) -> dict[str, Any]:
        """The provenance columns of one row whose verbatim source JSON text is `raw`."""
        return {
            "source": self.source,
            "source_ref": self.source_ref,
            "source_pointer": pointer,
            "flow_run_id": self.flow_run_id,
            "raw": raw,
        }

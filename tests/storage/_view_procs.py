"""Entry points of the child processes the view tests spawn (module level, so "spawn" finds them by name).

Each child opens its own Catalog, so it shares no cache, handle or lease object with the test process.
"""

from __future__ import annotations

import os
import signal

from storage import Catalog, faults
from storage.views import lease


def refresh_view(root: str, name: str, full: bool = False, lease_ttl: float | None = None) -> None:
    """Refresh a materialized view (the test decides, through the view's function, how long it takes)."""
    if lease_ttl is not None:
        lease.DEFAULT_TTL_SECONDS = lease_ttl
    Catalog(root).materialized_view(name).refresh(full=full)


def refresh_view_and_die(root: str, name: str, step: str, full: bool = False) -> None:
    """Refresh a view and SIGKILL this process when the commit reaches `step`: no cleanup code can run."""

    def die_at(reached: str) -> None:
        if reached == step:
            os.kill(os.getpid(), signal.SIGKILL)

    faults.set_hook(die_at)
    refresh_view(root, name, full)

"""Named points inside multi-step operations where tests inject crashes and faults."""

from __future__ import annotations

from collections.abc import Callable

_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or clear) a function called with the name of every checkpoint reached."""
    global _hook
    _hook = hook


def checkpoint(name: str) -> None:
    """Mark that an operation reached step `name` (e.g. "commit.after_manifest")."""
    if _hook is not None:
        _hook(name)

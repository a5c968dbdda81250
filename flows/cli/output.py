"""How commands print: JSON for scripts (`--json`), rich renderables for people."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import typer
from rich.console import Console, RenderableType


def console() -> Console:
    """A console on the current stdout (looked up per call, so test runners can capture it)."""
    return Console()


def json_default(value: Any) -> Any:
    """JSON for the non-JSON values rows and snapshots hold: times as ISO 8601, bytes as base64."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def emit(data: Any, as_json: bool, render: Callable[[], RenderableType]) -> None:
    """Print `data` as JSON, or what `render` builds from it for people."""
    if as_json:
        typer.echo(json.dumps(data, default=json_default, indent=2, ensure_ascii=False))
    else:
        # Values come from users' data and names: never interpret them as rich markup.
        console().print(render(), markup=False)

"""Arguments and options the commands share, and the parsing of version arguments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ..settings import CATALOG_ENV
from ..settings import DEFAULT_CATALOG as DEFAULT_CATALOG  # re-exported: the commands take it from here

VERSION_HELP = (
    "Snapshot id (an integer), ISO 8601 date-time (the latest snapshot at or before it; naive means local "
    "time), or a tag or branch name."
)

CatalogOption = Annotated[
    str,
    typer.Option(
        "--catalog",
        envvar=CATALOG_ENV,
        show_envvar=True,
        metavar="PATH_OR_URI",
        help="Catalog directory or s3://bucket/prefix URI.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
DatasetArgument = Annotated[str, typer.Argument(help="Dataset name.", show_default=False)]
VersionOption = Annotated[
    str | None, typer.Option("--version", metavar="VERSION", help=f"{VERSION_HELP} Default: the head of main.")
]

Version = int | datetime | str


def parse_version(text: str) -> Version:
    """A version from the command line: digits are a snapshot id, an ISO date-time a moment, else a name."""
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text

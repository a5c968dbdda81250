"""The `labelhouse` command-line app: its commands and the exit codes scripts rely on.

Exit codes: 0 success; 1 the storage engine refused or failed (its message on stderr, no traceback);
2 usage error (unknown option, bad value, malformed --where).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import typer

from storage import StorageError

from .commands import datasets, demo, log, maintenance, restore, show, tags

P = ParamSpec("P")


def _exit_1_on_storage_errors(command: Callable[P, None]) -> Callable[P, None]:
    """The command, printing storage and file-system errors as one line on stderr and exiting with 1."""

    @functools.wraps(command)  # typer reads the parameters through __wrapped__
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (StorageError, OSError) as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from None

    return run


app = typer.Typer(
    name="labelhouse",
    help="Labelhouse: a versioned lakehouse for machine-learning ground truth.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
for command in (
    datasets.datasets,
    log.log,
    show.show,
    tags.tag,
    tags.untag,
    restore.restore,
    maintenance.validate,
    maintenance.vacuum,
    demo.demo,
):
    app.command()(_exit_1_on_storage_errors(command))


def main() -> None:
    """Console-script entry point (`labelhouse`)."""
    app()

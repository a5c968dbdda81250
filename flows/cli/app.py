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

from .commands import (
    branches,
    datasets,
    demo,
    diff,
    export,
    ingest,
    log,
    maintenance,
    restore,
    serve,
    show,
    sql,
    tags,
)

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
    sql.sql,
    tags.tag,
    tags.untag,
    restore.restore,
    maintenance.validate,
    maintenance.vacuum,
    diff.diff,
    diff.history,
    export.export,
    branches.branch,
    branches.merge,
    serve.serve,
    serve.webhooks,
    demo.demo,
):
    app.command()(_exit_1_on_storage_errors(command))

ingest_app = typer.Typer(
    name="ingest", help="Ingest a source into a project's canonical datasets, through the checks.", no_args_is_help=True
)
ingest_app.command("label-studio")(_exit_1_on_storage_errors(ingest.label_studio))
ingest_app.command("coco")(_exit_1_on_storage_errors(ingest.coco))
ingest_app.command("labelbox")(_exit_1_on_storage_errors(ingest.labelbox))
ingest_app.command("s3-bucket")(_exit_1_on_storage_errors(ingest.s3_bucket))
ingest_app.command("webdataset")(_exit_1_on_storage_errors(ingest.webdataset))
app.add_typer(ingest_app)


def main() -> None:
    """Console-script entry point (`labelhouse`)."""
    app()

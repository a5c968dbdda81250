"""`labelhouse sql`: a DuckDB query over the catalog's datasets."""

from __future__ import annotations

from typing import Annotated

import typer

from storage import Catalog

from ..options import DEFAULT_CATALOG, VERSION_HELP, CatalogOption, JsonOption, Version, parse_version
from ..output import emit
from ..tables import records_table


def parse_pins(pins: list[str]) -> dict[str, Version]:
    """`name=version` arguments as a {dataset: version} mapping."""
    out: dict[str, Version] = {}
    for pin in pins:
        name, sep, version = pin.partition("=")
        if not sep or not name or not version:
            raise typer.BadParameter(f"{pin!r} is not NAME=VERSION, e.g. frames=reviewed", param_hint="'--version'")
        out[name] = parse_version(version)
    return out


def sql(
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="The SQL query; datasets are tables under their names.")
    ],
    pins: Annotated[
        list[str] | None,
        typer.Option(
            "--version",
            metavar="NAME=VERSION",
            help=f"Read dataset NAME at VERSION (repeatable; default: each at the head of main). {VERSION_HELP}",
        ),
    ] = None,
    max_rows: Annotated[
        int, typer.Option("--max-rows", min=0, help="Print at most this many rows of the table (--json prints all).")
    ] = 1000,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Run a DuckDB query over the catalog's datasets and views (record fields are not exposed)."""
    versions = parse_pins(pins or [])
    result = Catalog(catalog).sql(query, versions=versions)
    records = result.slice(0, None if as_json else max_rows).to_pylist()
    shown = "" if len(records) == result.num_rows else f" (first {len(records)} shown)"
    title = f"{result.num_rows} row{'' if result.num_rows == 1 else 's'}{shown}"
    data = {"columns": result.column_names, "rows": records}
    emit(data, as_json, lambda: records_table(records, result.column_names, title))

"""`radiant config`: the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Column

from workers.cli.common import DataTable
from workers.settings import get_settings


def show_config(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings (environment variables RADIANT_*), secrets masked."""
    values = get_settings().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    # Values fold instead of being cut with "…" (a pipe has no terminal width to fit).
    table = DataTable(
        *(Column(h, overflow="fold") for h in ("setting", "value", "environment variable"))
    )
    for name, value in values.items():
        table.add_row(name, "" if value is None else str(value), f"RADIANT_{name.upper()}")
    Console().print(table)

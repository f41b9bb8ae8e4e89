"""`radiant tenants create|list`: tenant administration (owner connection).

Creating a tenant is an admin action: it runs on the owner URL (`RADIANT_DATABASE_URL`, or the
embedded PostgreSQL), because the worker's application role may only read `tenants`.
Bad input (bad name or tier, duplicate name) and database problems print one line on stderr and
exit with status 2; never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from activities.db.engine import DatabaseUrls, mask_url
from activities.db.errors import DatabaseError
from activities.tenants import TIER_NAMES, TenantError, create_tenant, list_tenants
from workers.cli.common import DataTable, emit_json, not_migrated

EXIT_BAD_INPUT = 2

app = typer.Typer(no_args_is_help=True, help="Tenants (create, list).")
PIPED_WIDTH = 160  # tables written to a pipe or file are not squeezed to 80 columns

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def print_table(table: Table) -> None:
    """Print a table; ids fold instead of being cut off with an ellipsis."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, PIPED_WIDTH))
    for column in table.columns:
        column.overflow = "fold"
    console.print(table)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line on stderr (no wrapping, no markup), then exit."""
    one_line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(code)


@contextmanager
def database() -> Iterator[DatabaseUrls]:
    """The owner and app URLs from settings; database and input errors become one stderr line.

    With no RADIANT_DATABASE_URL the embedded PostgreSQL is started for the command and
    released afterwards (left running if another process, e.g. `radiant up`, holds it, or if
    this process already held it: `radiant demo` runs this inside the stack's own process).
    """
    from activities.db.embedded import embedded_postgres_for_block
    from activities.db.engine import resolve_database_urls
    from workers.settings import get_settings

    settings = get_settings()
    urls: DatabaseUrls | None = None
    with embedded_postgres_for_block(settings.data_dir if settings.database_url is None else None):
        try:
            urls = resolve_database_urls(settings)
            yield urls
        except (DatabaseError, TenantError) as err:
            fail(str(err))
        except SQLAlchemyError as err:
            if hint := not_migrated(err):
                fail(hint)
            orig = getattr(err, "orig", None) or err
            where = mask_url(urls.owner) if urls is not None else "the database"
            fail(f"database error at {where}: {str(orig).strip() or type(err).__name__}")


def parse_tier(value: str) -> int:
    try:
        tier = int(value.strip())
    except ValueError:
        tier = 0
    if not 1 <= tier <= 5:
        fail(
            f"--tier must be an integer from 1 to 5 "
            f"({', '.join(f'{k} {v}' for k, v in TIER_NAMES.items())}), got {value!r}"
        )
    return tier


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique tenant name (letters, digits, . _ -).")],
    tier: Annotated[
        str, typer.Option("--tier", metavar="N", help="Tier 1 (SEED) to 5 (ENTERPRISE).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant."""
    tier_n = parse_tier(tier)
    with database() as urls:
        urls.require_owner("tenants create")
        record = create_tenant(urls.owner, name, tier_n)
    if as_json:
        emit_json(record)
    else:
        typer.echo(f"created tenant {record.name} (tier {record.tier}) id {record.id}")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List tenants."""
    with database() as urls:
        records = list_tenants(urls.owner)
    if as_json:
        emit_json(records)
        return
    table = DataTable(title=f"Tenants ({len(records)})")
    table.add_column("name")
    table.add_column("tier", justify="right")
    table.add_column("id")
    table.add_column("created")
    for r in records:
        created = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else ""
        table.add_row(r.name, f"{r.tier} {TIER_NAMES.get(r.tier, '')}", str(r.id), created)
    print_table(table)

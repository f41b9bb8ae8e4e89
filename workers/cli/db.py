"""`radiant db upgrade|downgrade|current`: schema migrations, run as the database owner.

With no RADIANT_DATABASE_URL the embedded PostgreSQL (data_dir/postgres) is started for the
duration of the command (and left running if another process, e.g. `radiant up`, holds it).
Connection problems print one line on stderr and exit with status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from alembic.util.exc import CommandError
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from activities.db import migrate
from activities.db.engine import DatabaseUrls, mask_url, resolve_database_urls
from activities.db.errors import DatabaseError
from workers.settings import get_settings

EXIT_DATABASE_ERROR = 2

app = typer.Typer(no_args_is_help=True)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _database() -> Iterator[DatabaseUrls]:
    """Resolve the URLs (starting the embedded server if configured) and turn database errors
    into one stderr line instead of a traceback. The embedded server is released afterwards only
    if this call acquired it (not if this process already held it, e.g. the stack's)."""
    from activities.db.embedded import embedded_postgres_for_block

    settings = get_settings()
    with embedded_postgres_for_block(settings.data_dir if settings.database_url is None else None):
        try:
            yield resolve_database_urls(settings)
        except DatabaseError as err:
            raise _fail(str(err), EXIT_DATABASE_ERROR) from None
        except CommandError as err:  # alembic: e.g. a relative step past the first or last one
            raise _fail(str(err), EXIT_DATABASE_ERROR) from None
        except SQLAlchemyError as err:
            orig = getattr(err, "orig", None) or err
            text = str(orig).strip()
            first_line = text.splitlines()[0] if text else type(err).__name__
            raise _fail(f"migration failed: {first_line}", 1) from None


def _known(revision: str) -> str:
    try:
        return migrate.check_revision(revision)
    except ValueError as err:
        raise _fail(str(err), EXIT_DATABASE_ERROR) from None


def _where(urls: DatabaseUrls) -> str:
    return "embedded PostgreSQL" if urls.embedded else mask_url(urls.owner)


@app.command()
def upgrade(
    revision: Annotated[str, typer.Option("--revision", "-r", help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to --revision (default: head); creates the application role if
    missing."""
    revision = _known(revision)
    with _database() as urls:
        app_url = make_url(urls.app)
        migrate.upgrade(
            urls.owner, revision, app_role=app_url.username, app_password=app_url.password
        )
        now = migrate.current(urls.owner) or "base"
        behind = revision in migrate.revisions() and now != revision
        # Upgrading to an older revision does nothing: say how to get there.
        hint = f" (past {revision}: `radiant db downgrade -r {revision} --yes`)" if behind else ""
        typer.echo(f"{_where(urls)}: at revision {now}{hint}")


@app.command()
def downgrade(
    revision: Annotated[
        str, typer.Option("--revision", "-r", help="Target revision ('base' drops everything).")
    ],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: downgrading drops tables and their data.")
    ] = False,
) -> None:
    """Revert migrations down to --revision. Destroys data: requires --yes."""
    revision = _known(revision)
    if not yes:
        raise _fail(
            f"downgrade to {revision!r} drops tables and their data; add --yes to confirm",
            EXIT_DATABASE_ERROR,
        )
    with _database() as urls:
        # The application role loses its grants; the role itself is kept (cluster-wide).
        migrate.downgrade(urls.owner, revision, app_role=make_url(urls.app).username)
        typer.echo(f"{_where(urls)}: at revision {migrate.current(urls.owner) or 'base'}")


@app.command()
def current() -> None:
    """Print the database's current revision and whether it is the newest."""
    with _database() as urls:
        rev = migrate.current(urls.owner)
        head = migrate.head()
        status = "up to date" if rev == head else f"head is {head}; run `radiant db upgrade`"
        typer.echo(f"{_where(urls)}: at revision {rev or 'base'} ({status})")

"""What every command shares: settings, clear errors instead of tracebacks, JSON output."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import psycopg
import typer
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.style import StyleType
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError

if TYPE_CHECKING:
    from models_catalog.catalog import Catalog
    from workers.settings import Settings

T = TypeVar("T")
# soft_wrap: long URLs and ids stay on one line (copyable); emoji=False: a ":name:" in data
# (a payload, an error) stays as it is.
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


def esc(value: object) -> str:
    """Data (an error text, a payload, a name) inside a Rich markup string, printed as it is:
    `[i-0a1b2c3d4e] ...` would otherwise lose its brackets (read as a style) and
    `[/opt/ml/model]` raise MarkupError (read as a closing tag)."""
    return escape(str(value))


class DataTable(Table):
    """A table of data: text cells and the title print as they are, never read as markup
    (a cell that wants a style passes a rich Text)."""

    def __init__(self, *headers: Any, title: str | Text | None = None, **options: Any) -> None:
        if isinstance(title, str):
            title = Text(title, style="table.title")
        super().__init__(*headers, title=title, **options)

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = (Text(c) if isinstance(c, str) else c for c in renderables)
        super().add_row(*cells, style=style, end_section=end_section)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {esc(message)}", highlight=False)
    raise typer.Exit(code)


def catalog_or_fail(catalog_dir: Path | None) -> Catalog:
    """The catalog in `catalog_dir` (None: the bundled one); a broken one is one line, exit 2."""
    from models_catalog.catalog import load_catalog
    from models_catalog.errors import CatalogError

    try:
        return load_catalog(catalog_dir)
    except CatalogError as exc:
        fail(str(exc))


def served_pair(settings: Settings, app_id: str | None, env: str | None) -> tuple[str, str]:
    """The (app, environment) a command acts on (defaults from the settings), refused in one
    line when RADIANT_APPS does not serve it: nothing is written for a pair nobody serves."""
    pair = (app_id or settings.app_id, env or settings.environment)
    if problem := settings.app_scope().problem(*pair):
        fail(problem)
    return pair


NO_WORKER_CHECKS = 6  # looks at the task queue's pollers, NO_WORKER_CHECK_EVERY_S apart
NO_WORKER_CHECK_EVERY_S = 0.5


async def note_if_no_worker(client: Client, task_queue: str) -> bool:
    """One stderr line when no worker serves the task queue: Temporal keeps the request and
    runs it when one starts, which a waiting command would otherwise show as a hang. True
    when it said so."""
    from workers.temporal import worker_polling

    # A worker that has just started shows up with its first poll: look again for a moment
    # before saying there is none (only this case waits; a served queue answers at once).
    for _ in range(NO_WORKER_CHECKS - 1):
        if await worker_polling(client, task_queue) is not False:
            return False
        await asyncio.sleep(NO_WORKER_CHECK_EVERY_S)
    if await worker_polling(client, task_queue) is False:
        err_console.print(
            f"[yellow]note:[/] no worker is polling task queue {esc(repr(task_queue))}: nothing "
            "runs until one starts (`radiant up` or `radiant worker`); the request stays queued.",
            highlight=False,
        )
        return True
    return False


def failure_message(exc: BaseException) -> str:
    """The innermost user-facing message of a Temporal failure chain."""
    current: BaseException | None = exc
    message = str(exc)
    while current is not None:
        if isinstance(current, ApplicationError):
            return current.message
        if isinstance(current, FailureError) and str(current):
            message = str(current)
        current = current.__cause__ or getattr(current, "cause", None)
    return message


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; known failures become one line on stderr and exit code 2."""
    from activities.app_scope import AppNotServedError
    from activities.db.engine import one_line
    from activities.db.errors import DatabaseError
    from models_catalog.errors import CatalogError
    from workers.temporal import TemporalUnavailableError

    try:
        return asyncio.run(coro)
    except (CatalogError, DatabaseError, TemporalUnavailableError, AppNotServedError) as exc:
        fail(str(exc))
    except (WorkflowUpdateFailedError, WorkflowFailureError) as exc:
        fail(failure_message(exc))
    except RPCError as exc:
        fail(f"Temporal refused the request: {exc.message}")
    except WorkflowQueryFailedError as exc:
        fail(str(exc))  # the workflow's own words (e.g. why the model cannot be managed)
    except KeyboardInterrupt:
        fail("interrupted", 130)  # Ctrl-C: one line, not a traceback
    except RPCTimeoutOrCancelledError:
        # The SDK's word for a wait on an update cut short: Ctrl-C while it waited (the
        # cancellation becomes this, not KeyboardInterrupt), or Temporal's long poll gave up.
        fail("interrupted, or Temporal did not answer in time: the request may still apply", 130)
    except (SQLAlchemyError, psycopg.Error) as exc:
        # Commands that read the database directly: one line, not a driver traceback.
        if hint := not_migrated(exc):
            fail(hint)
        if isinstance(exc, SQLAlchemyOperationalError | psycopg.OperationalError):
            fail(f"the database is unavailable: {one_line(getattr(exc, 'orig', None) or exc)}")
        raise


def _app_role() -> str:
    """The application role's name, as configured (the migrations create it)."""
    from sqlalchemy.engine import make_url

    from workers.settings import get_settings

    settings = get_settings()
    if settings.app_database_url is not None:
        return make_url(settings.app_database_url.get_secret_value()).username or ""
    return settings.app_db_user


def not_migrated(exc: BaseException) -> str | None:
    """The to-do for a database the migrations have not prepared yet: no tables, or no
    application role (the migrations create both); None for any other error."""
    from activities.db.errors import not_migrated_message

    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, psycopg.errors.UndefinedTable):
        what = str(orig).strip().splitlines()[0]  # not the SQL position lines under it
    elif found := re.search(rf'role "{re.escape(_app_role())}" does not exist', str(orig)):
        what = found.group(0)  # the role the migrations create (not a mistyped owner user)
    else:
        return None
    return not_migrated_message(what)


def emit_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    typer.echo(json.dumps(value, indent=2, default=json_default))


def json_default(value: Any) -> Any:
    """Times as ISO 8601 (as pydantic writes them), anything else JSON lacks as its text."""
    from datetime import date, time, timedelta

    if isinstance(value, date | time | timedelta):
        return to_jsonable_python(value)
    return str(value)

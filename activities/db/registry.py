"""Scope for the `unified_model_registry` view's thermal columns.

A self-hosted model's thermal state exists per (app, environment), so the view reads which one to
show from two transaction-local settings. Without them its thermal columns are NULL.
"""

from __future__ import annotations

from sqlalchemy import Connection, Executable, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from activities.db.schema import REGISTRY_APP_SETTING, REGISTRY_ENV_SETTING


def _scope_stmt(app_id: str, environment: str) -> Executable:
    return select(
        func.set_config(REGISTRY_APP_SETTING, app_id, True),
        func.set_config(REGISTRY_ENV_SETTING, environment, True),
    )


async def set_registry_scope(conn: AsyncConnection, app_id: str, environment: str) -> None:
    """Show (app_id, environment)'s thermal state in `unified_model_registry` for the rest of
    the current transaction (call inside `engine.begin()`)."""
    await conn.execute(_scope_stmt(app_id, environment))


def set_registry_scope_sync(conn: Connection, app_id: str, environment: str) -> None:
    conn.execute(_scope_stmt(app_id, environment))

"""Alembic environment: the owner's sync psycopg 3 engine, all pending migrations in one
transaction (PostgreSQL DDL is transactional, so a failed upgrade leaves nothing half-done).

Where values come from, first match wins:
- database URL: `config.attributes["owner_url"]` (set by `activities.db.migrate`), `-x url=...`,
  `sqlalchemy.url`, then the settings (RADIANT_DATABASE_URL; unset = embedded PostgreSQL);
- application role: `config.attributes["app_role"/"app_password"]`, `-x app_role=... -x
  app_password=...`, then the settings (the user/password of RADIANT_APP_DATABASE_URL, else
  RADIANT_APP_DB_USER / RADIANT_APP_DB_PASSWORD, default radiant_app). The resolved values are
  left in `config.attributes` for the revisions (see `0001`).
"""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context
from sqlalchemy import Connection, make_url, pool

from activities.db.engine import create_sync_engine, normalize_url, url_to_string
from activities.db.schema import metadata

config = context.config
target_metadata = metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _x_args() -> dict[str, str]:
    return context.get_x_argument(as_dictionary=True)


def _database_url() -> str:
    url = (
        config.attributes.get("owner_url")
        or _x_args().get("url")
        or config.get_main_option("sqlalchemy.url")
    )
    if url:
        return url_to_string(normalize_url(url))
    from activities.db.engine import resolve_database_urls
    from workers.settings import get_settings

    return resolve_database_urls(get_settings()).owner


def _resolve_app_role() -> None:
    """Fill `app_role`/`app_password` in config.attributes for the revisions."""
    attrs = config.attributes
    x = _x_args()
    role = attrs.get("app_role") or x.get("app_role")
    password = attrs.get("app_password") or x.get("app_password")
    if role is None:
        from workers.settings import get_settings

        settings = get_settings()
        if settings.app_database_url is not None:
            app_url = make_url(settings.app_database_url.get_secret_value())
            role, password = app_url.username, password or app_url.password
        else:
            role = settings.app_db_user
            password = password or settings.app_db_password.get_secret_value()
    attrs["app_role"] = role or "radiant_app"
    attrs["app_password"] = password


def _configure_kwargs() -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        # Server defaults are part of the contract (now(), '{}', 'OFF'): compare them too.
        "compare_server_default": True,
    }


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: emit the SQL instead of running it."""
    context.configure(
        url=_database_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_kwargs(),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_configure_kwargs())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:  # a caller (test, command) shares its connection
        _run(shared)
        return
    engine = create_sync_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


_resolve_app_role()
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Errors of the database layer, worded for an operator (no tracebacks, passwords masked)."""

from __future__ import annotations


class DatabaseError(RuntimeError):
    """Base class: a database problem the CLI reports as one line."""


class InvalidDatabaseUrlError(DatabaseError, ValueError):
    """The configured URL is not a PostgreSQL URL we can use."""


class DatabaseUnavailableError(DatabaseError):
    """PostgreSQL cannot be reached (or refuses the login) at the configured URL."""

    def __init__(self, *, target: str, url: str, reason: str) -> None:
        self.target = target  # "host:port" or "unix socket <dir>"
        self.url = url  # password already masked
        self.reason = reason
        super().__init__(f"PostgreSQL unavailable at {target} ({url}): {reason}")


class OwnerRequiredError(DatabaseError):
    """An admin command run with only the application role configured (a worker's settings)."""

    def __init__(self, command: str) -> None:
        super().__init__(
            f"{command} needs the database owner connection (RADIANT_DATABASE_URL); only the "
            "application role (RADIANT_APP_DATABASE_URL) is configured"
        )


class EmbeddedPostgresError(DatabaseError):
    """The embedded PostgreSQL (pgserver) could not be started."""


def not_migrated_message(what: str) -> str:
    """The to-do for a database the migrations have not prepared; `what` is the missing piece
    (a table, the application role), as PostgreSQL names it."""
    return (
        f"the database is not migrated yet ({what}): run `radiant db upgrade`, or `radiant up`,"
        " which migrates it"
    )

"""Database URLs and engines.

Two roles reach the same database: the *owner* (migrations, catalog sync) and the *application*
role the worker uses (owns nothing, cannot bypass row-level security; DESIGN 6). Both use the
psycopg 3 driver (`postgresql+psycopg://`), which serves sync and async engines alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from activities.db.errors import (
    DatabaseUnavailableError,
    InvalidDatabaseUrlError,
    OwnerRequiredError,
)

if TYPE_CHECKING:
    from workers.settings import Settings

DRIVERNAME = "postgresql+psycopg"
# A dead host must fail in seconds, not after the OS TCP timeout (minutes).
DEFAULT_CONNECT_TIMEOUT_S = 5
_ACCEPTED_DRIVERNAMES = {"postgres", "postgresql", DRIVERNAME}


@dataclass(frozen=True)
class DatabaseUrls:
    """Owner and application URLs of one database (strings with passwords, repr masked)."""

    owner: str
    app: str
    embedded: bool = False
    # False when only the application role is configured (a worker's settings): `owner` is
    # then that role too, which admin commands must not take for the owner.
    has_owner: bool = True

    def require_owner(self, command: str) -> None:
        """Admin commands refuse up front when only the application role is configured (a
        worker's settings) rather than fail half-way on a permission."""
        if not self.has_owner:
            raise OwnerRequiredError(command)

    def __repr__(self) -> str:
        return (
            f"DatabaseUrls(owner={mask_url(self.owner)!r}, app={mask_url(self.app)!r}, "
            f"embedded={self.embedded})"
        )


def normalize_url(url: str | URL) -> URL:
    """Parse a PostgreSQL URL and pin the psycopg 3 driver (`postgres://` and `postgresql://`
    are accepted as the same server, as libpq users write them)."""
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as err:
            raise InvalidDatabaseUrlError(
                f"not a database URL: {_mask_unparsable(url)!r} "
                "(expected postgresql+psycopg://user:password@host:port/dbname)"
            ) from err
    if parsed.drivername not in _ACCEPTED_DRIVERNAMES:
        raise InvalidDatabaseUrlError(
            f"unsupported database URL scheme {parsed.drivername!r} in {mask_url(parsed)!r}: "
            "use postgresql+psycopg:// (PostgreSQL with psycopg 3)"
        )
    if not parsed.database:
        raise InvalidDatabaseUrlError(f"database URL names no database: {mask_url(parsed)!r}")
    return parsed.set(drivername=DRIVERNAME)


def url_to_string(url: URL) -> str:
    """The URL as a string *with* its password (for handing to engines, never for logs)."""
    return url.render_as_string(hide_password=False)


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***; unparsable input is masked entirely."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
        return parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _mask_unparsable(str(url))


def _mask_unparsable(url: str) -> str:
    return "**********" if "@" in url else url


def describe_target(url: str | URL) -> str:
    """Where a URL points: "host:port" or "unix socket <dir>" (pgserver uses sockets)."""
    parsed = url if isinstance(url, URL) else make_url(url)
    host = parsed.host or _query_value(parsed, "host")
    port = parsed.port or _query_value(parsed, "port") or 5432
    if host is None:
        return f"local socket (default), port {port}"
    if str(host).startswith("/"):
        return f"unix socket {host} (port {port})"
    return f"{host}:{port}"


def _query_value(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    if isinstance(value, tuple):
        return value[0] if value else None
    return value


def libpq_conninfo(url: str | URL) -> str:
    """A libpq/psycopg connection string for the URL (for raw psycopg, e.g. `LISTEN`)."""
    parsed = normalize_url(url)
    return url_to_string(parsed.set(drivername="postgresql"))


def resolve_database_urls(settings: Settings, *, start_embedded: bool = True) -> DatabaseUrls:
    """The owner and application URLs from settings.

    `database_url` unset means the embedded PostgreSQL in `data_dir/postgres`, started (or reused)
    here unless `start_embedded` is false. `app_database_url` unset means the same server and
    database as the owner, logging in as `app_db_user`/`app_db_password`.
    """
    # Only an app URL (a worker in production): nothing embedded; the owner URL is unused there.
    only_app = settings.database_url is None and settings.app_database_url is not None
    embedded = settings.database_url is None and not only_app
    if only_app:
        assert settings.app_database_url is not None
        owner = normalize_url(settings.app_database_url.get_secret_value())
    elif not embedded:
        assert settings.database_url is not None
        owner = normalize_url(settings.database_url.get_secret_value())
    elif start_embedded:
        from activities.db.embedded import ensure_embedded_postgres

        owner = make_url(ensure_embedded_postgres(settings.data_dir))
    else:
        from activities.db.embedded import embedded_owner_url

        owner = make_url(embedded_owner_url(settings.data_dir))
    if settings.app_database_url is not None:
        app = normalize_url(settings.app_database_url.get_secret_value())
    else:
        app = owner.set(
            username=settings.app_db_user,
            password=settings.app_db_password.get_secret_value(),
        )
    return DatabaseUrls(
        owner=url_to_string(owner),
        app=url_to_string(app),
        embedded=embedded,
        has_owner=not only_app,
    )


def _connect_args(url: URL, extra: dict[str, Any] | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
    args.update(extra or {})
    return args


def create_app_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """The async engine (psycopg 3) a worker process creates once at start-up and shares.

    `pool_pre_ping` drops connections a database restart killed instead of failing an activity.
    """
    parsed = normalize_url(url)
    connect_args = _connect_args(parsed, kwargs.pop("connect_args", None))
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(parsed, connect_args=connect_args, **kwargs)


def create_sync_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A sync engine (same driver) for commands and migrations."""
    parsed = normalize_url(url)
    connect_args = _connect_args(parsed, kwargs.pop("connect_args", None))
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, connect_args=connect_args, **kwargs)


MASKED_PASSWORD_MIN = 4


def unavailable_error(url: str | URL, err: BaseException) -> DatabaseUnavailableError:
    """Turn a connection failure into an operator-readable error, password masked."""
    parsed = url if isinstance(url, URL) else make_url(url)
    reason = one_line(getattr(err, "orig", None) or err)
    # A password of a few characters would mangle ordinary words; those are no secret anyway.
    # Nor is one equal to the user name (the default radiant_app/radiant_app), which the URL
    # shows: masked, `role "radiant_app" does not exist` would lose the role it names.
    password = str(parsed.password or "")
    if len(password) >= MASKED_PASSWORD_MIN and password != parsed.username:
        reason = reason.replace(password, "***")
    return DatabaseUnavailableError(
        target=describe_target(parsed), url=mask_url(parsed), reason=reason
    )


def one_line(err: BaseException) -> str:
    """libpq messages span lines ("...failed: Connection refused\n\tIs the server running...")."""
    return "; ".join(ln.strip() for ln in str(err).splitlines() if ln.strip()) or type(err).__name__


def check_database(url: str | URL) -> None:
    """Connect once and run `SELECT 1`; raise DatabaseUnavailableError if that fails."""
    parsed = normalize_url(url)
    engine = create_sync_engine(parsed, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as err:
        raise unavailable_error(parsed, err) from err
    finally:
        engine.dispose()


async def check_database_async(url: str | URL) -> None:
    """Async twin of `check_database` (for worker start-up)."""
    parsed = normalize_url(url)
    engine = create_app_engine(parsed, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except OperationalError as err:
        raise unavailable_error(parsed, err) from err
    finally:
        await engine.dispose()

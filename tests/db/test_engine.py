"""URLs, engines and connection errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import make_url

from activities.db import migrate
from activities.db.engine import (
    check_database,
    check_database_async,
    mask_url,
    normalize_url,
    resolve_database_urls,
    unavailable_error,
)
from activities.db.errors import DatabaseUnavailableError, InvalidDatabaseUrlError
from tests.fixtures.postgres import MigratedDb
from workers.settings import Settings


def _closed_port() -> int:
    """A local TCP port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_is_a_clear_error_with_the_password_masked() -> None:
    port = _closed_port()
    url = f"postgresql://radiant:s3cret-pw@127.0.0.1:{port}/radiant"
    with pytest.raises(DatabaseUnavailableError) as info:
        check_database(url)
    err = info.value
    message = str(err)
    assert err.target == f"127.0.0.1:{port}"
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower()
    assert "s3cret-pw" not in message and "***" in message
    assert "\n" not in message  # one line for the CLI


def test_a_one_letter_password_does_not_mangle_the_reason() -> None:
    err = unavailable_error(
        "postgresql://u:p@127.0.0.1:1/db", OSError("port 1 refused; accepting TCP/IP")
    )
    assert "port 1 refused; accepting TCP/IP" in str(err) and "u:***@" in str(err)


def test_a_password_equal_to_the_user_name_keeps_the_role_in_the_reason() -> None:
    """The defaults (radiant_app/radiant_app): the CLI spots a database not migrated yet by
    the role named in the reason, and the URL shows that name anyway."""
    err = unavailable_error(
        "postgresql://radiant_app:radiant_app@127.0.0.1:1/db",
        OSError('FATAL:  role "radiant_app" does not exist'),
    )
    assert 'role "radiant_app" does not exist' in str(err) and "radiant_app:***@" in str(err)


async def test_unreachable_async_and_via_migrate() -> None:
    url = f"postgresql+psycopg://u:pw@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(DatabaseUnavailableError):
        await check_database_async(url)
    with pytest.raises(DatabaseUnavailableError):
        migrate.upgrade(url)


def test_missing_unix_socket_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@/radiant?host={tmp_path}"
    with pytest.raises(DatabaseUnavailableError, match=f"unix socket {tmp_path}"):
        check_database(url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u:pw@host/db", "unsupported database URL scheme"),
        ("postgresql+psycopg2://u:pw@host/db", "unsupported database URL scheme"),
        ("postgresql://u:pw@host", "names no database"),
    ],
)
def test_invalid_urls(url: str, match: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=match) as info:
        normalize_url(url)
    assert ":pw@" not in str(info.value)


def test_plain_postgres_urls_get_the_psycopg3_driver() -> None:
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u@h:5433/db").port == 5433
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_app_url_defaults_to_the_owner_server_as_app_db_user() -> None:
    settings = Settings(
        database_url=SecretStr("postgresql://owner:ownerpw@db.example:5432/radiant"),
        app_db_user="worker",
        app_db_password=SecretStr("workerpw"),
    )
    urls = resolve_database_urls(settings)
    app = make_url(urls.app)
    assert (app.username, app.password, app.host, app.database) == (
        "worker",
        "workerpw",
        "db.example",
        "radiant",
    )
    assert make_url(urls.owner).drivername == "postgresql+psycopg" and not urls.embedded
    assert "ownerpw" not in repr(urls) and "workerpw" not in repr(urls)


def test_explicit_app_database_url_wins() -> None:
    settings = Settings(
        database_url=SecretStr("postgresql://owner:pw@db.example/radiant"),
        app_database_url=SecretStr("postgresql://app:pw2@replica.example/radiant"),
    )
    assert make_url(resolve_database_urls(settings).app).host == "replica.example"


async def test_check_database_passes_on_the_test_server(migrated_db: MigratedDb) -> None:
    check_database(migrated_db.owner_url)
    await check_database_async(migrated_db.app_url)


def test_only_an_app_url_starts_nothing_embedded(tmp_path) -> None:
    """The docker-compose worker: only RADIANT_APP_DATABASE_URL, no owner credentials."""
    settings = Settings(
        data_dir=tmp_path, app_database_url=SecretStr("postgresql://app:pw@db.example/radiant")
    )
    urls = resolve_database_urls(settings)
    assert not urls.embedded and make_url(urls.app).host == "db.example"
    assert not (tmp_path / "postgres").exists()

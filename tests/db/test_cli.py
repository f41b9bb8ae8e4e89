"""`radiant db ...` through typer's CliRunner, against the test server."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activities.db import migrate
from activities.db.embedded import embedded_owner_url
from activities.db.errors import EmbeddedPostgresError
from tests.fixtures.postgres import TEST_APP_PASSWORD, TEST_APP_ROLE
from workers.cli.main import app
from workers.settings import get_settings


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point the settings at a database URL (get_settings is cached: clear it around the test)."""

    def use(url: str) -> None:
        monkeypatch.setenv("RADIANT_DATABASE_URL", url)
        monkeypatch.setenv("RADIANT_APP_DB_USER", TEST_APP_ROLE)
        monkeypatch.setenv("RADIANT_APP_DB_PASSWORD", TEST_APP_PASSWORD)
        monkeypatch.delenv("RADIANT_APP_DATABASE_URL", raising=False)
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


def test_db_upgrade_current_downgrade(
    fresh_database: Callable[[], str], cli_env: Callable[[str], None]
) -> None:
    url = fresh_database()
    cli_env(url)
    runner = CliRunner()

    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert "at revision base" in result.stdout

    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "at revision 0006" in result.stdout
    assert migrate.current(url) == "0006"

    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0 and "up to date" in result.stdout

    result = runner.invoke(app, ["db", "downgrade", "--revision", "base"])
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert migrate.current(url) == "0006"  # nothing happened without confirmation

    result = runner.invoke(app, ["db", "downgrade", "--revision", "base", "--yes"])
    assert result.exit_code == 0, result.output
    assert migrate.current(url) is None


@pytest.mark.parametrize(
    "command",
    [
        ["upgrade", "-r", "nosuch"],
        ["upgrade", "-r", ""],
        ["downgrade", "-r", "nosuch", "--yes"],
        ["downgrade", "-r", "x-1", "--yes"],
    ],
)
def test_an_unknown_revision_is_refused_in_a_line_before_connecting(
    cli_env: Callable[[str], None], command: list[str]
) -> None:
    cli_env("postgresql://nobody@127.0.0.1:9/none")  # never reached
    result = CliRunner().invoke(app, ["db", *command])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: unknown revision {command[2]!r}; known: 0001, 0002, 0003, 0004, 0005, 0006, "
        "head, base (or a relative step such as -1)"
    )


def test_a_relative_step_past_the_ends_is_one_line(
    fresh_database: Callable[[], str], cli_env: Callable[[str], None]
) -> None:
    cli_env(fresh_database())
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "-r", "-1"])  # at base: nothing below
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: Relative revision -1 didn't produce")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # an unknown revision is refused before the --yes confirmation is asked for
    result = runner.invoke(app, ["db", "downgrade", "-r", "nosuch"])
    assert result.exit_code == 2 and "unknown revision 'nosuch'" in result.stderr


def test_upgrading_to_an_older_revision_says_how_to_go_back(
    fresh_database: Callable[[], str], cli_env: Callable[[str], None]
) -> None:
    cli_env(fresh_database())
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["db", "upgrade", "-r", "0001"])
    assert result.exit_code == 0, result.output
    assert "at revision 0006 (past 0001: `radiant db downgrade -r 0001 --yes`)" in result.stdout
    result = runner.invoke(app, ["db", "upgrade", "-r", "0006"])
    assert "past" not in result.stdout


def test_db_downgrade_requires_a_revision() -> None:
    result = CliRunner().invoke(app, ["db", "downgrade", "--yes"])
    assert result.exit_code != 0 and "--revision" in result.output


def test_unreachable_database_is_one_line_and_exit_2(cli_env: Callable[[str], None]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli_env(f"postgresql://radiant:topsecret@127.0.0.1:{port}/radiant")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PostgreSQL unavailable at 127.0.0.1:")
    assert "topsecret" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_invalid_url_is_one_line_and_exit_2(cli_env: Callable[[str], None]) -> None:
    cli_env("mysql://u:pw@localhost/db")
    result = CliRunner().invoke(app, ["db", "current"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "unsupported database URL" in result.stderr


@pytest.mark.slow
def test_embedded_database_runs_for_the_duration_of_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No RADIANT_DATABASE_URL: the command starts the embedded server and stops it after."""
    with tempfile.TemporaryDirectory(prefix="radiant-test-cli-") as d:
        data_dir = Path(d)
        monkeypatch.delenv("RADIANT_DATABASE_URL", raising=False)
        monkeypatch.delenv("RADIANT_APP_DATABASE_URL", raising=False)
        monkeypatch.setenv("RADIANT_DATA_DIR", str(data_dir))
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["db", "upgrade"])
            assert result.exit_code == 0, result.output
            assert result.stdout.strip() == "embedded PostgreSQL: at revision 0006"
            with pytest.raises(EmbeddedPostgresError, match="not running"):
                embedded_owner_url(data_dir)  # stopped again: this process was its only user

            result = CliRunner().invoke(app, ["db", "current"])  # the data survived
            assert result.exit_code == 0 and "0006 (up to date)" in result.stdout
        finally:
            get_settings.cache_clear()


@pytest.mark.parametrize("args", [["tenants", "list"], ["thermal", "list"], ["catalog", "sync"]])
def test_a_database_never_migrated_says_what_to_run(
    fresh_database: Callable[[], str], cli_env: Callable[[str], None], args: list[str]
) -> None:
    cli_env(fresh_database())
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "radiant db upgrade" in lines[0], result.stderr


def test_only_the_application_role_missing_means_not_migrated(monkeypatch) -> None:
    """The migrations create the application role; a mistyped owner user is another error."""
    import psycopg

    from workers.cli.common import not_migrated

    monkeypatch.delenv("RADIANT_APP_DATABASE_URL", raising=False)
    monkeypatch.setenv("RADIANT_APP_DB_USER", "radiant_app")
    get_settings.cache_clear()
    try:
        missing = 'connection failed: FATAL:  role "{}" does not exist'
        assert "radiant db upgrade" in (
            not_migrated(psycopg.OperationalError(missing.format("radiant_app"))) or ""
        )
        assert not_migrated(psycopg.OperationalError(missing.format("postgress"))) is None
    finally:
        get_settings.cache_clear()

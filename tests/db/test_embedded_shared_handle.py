"""A command run inside the process that already holds the embedded PostgreSQL (`radiant demo`
reports usage inside the stack's own process) must leave the server running: pgserver gives the
process one handle per data directory, and releasing it stops the server under the worker."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from activities.db.embedded import (
    embedded_owner_url,
    holds_embedded_postgres,
    release_embedded_postgres,
)
from activities.db.engine import libpq_conninfo, resolve_database_urls
from activities.db.errors import EmbeddedPostgresError
from workers.cli import db as db_cli
from workers.cli import tenants
from workers.cli.main import app
from workers.settings import get_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings with no database URL (the embedded server) in a scratch data directory."""
    # Not pytest's tmp_path: a concurrent pytest session may prune it under a live server.
    with tempfile.TemporaryDirectory(prefix="radiant-test-shared-") as d:
        monkeypatch.delenv("RADIANT_DATABASE_URL", raising=False)
        monkeypatch.delenv("RADIANT_APP_DATABASE_URL", raising=False)
        monkeypatch.setenv("RADIANT_DATA_DIR", d)
        get_settings.cache_clear()
        try:
            yield Path(d)
        finally:
            get_settings.cache_clear()
            release_embedded_postgres(Path(d))  # no-op unless a failed test left it held


def _answers(owner_url: str) -> bool:
    with psycopg.connect(libpq_conninfo(owner_url), autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_commands_inside_the_stack_process_leave_its_postgres_running(
    embedded_env: Path,
) -> None:
    # What the stack does first (workers/cli/stack.py prepare_database): start and hold it.
    owner = resolve_database_urls(get_settings()).owner
    assert holds_embedded_postgres(embedded_env)

    with tenants.database() as urls:  # what `radiant demo` reaches through usage.report
        assert urls.embedded and _answers(urls.owner)
    assert _answers(owner), "tenants.database() stopped the stack's PostgreSQL"

    with db_cli._database() as urls:
        assert urls.embedded
    assert _answers(owner), "db._database() stopped the stack's PostgreSQL"

    # The error path too: an unmigrated database is one stderr line, and the server stays.
    result = CliRunner().invoke(app, ["tenants", "list"])
    assert result.exit_code == 2, result.output
    assert "radiant db upgrade" in result.stderr
    assert _answers(owner) and holds_embedded_postgres(embedded_env)

    release_embedded_postgres(embedded_env)  # the stack stopping: the last holder stops it
    with pytest.raises(EmbeddedPostgresError, match="not running"):
        embedded_owner_url(embedded_env)


def test_a_command_that_started_postgres_still_stops_it(embedded_env: Path) -> None:
    with tenants.database() as urls:
        assert _answers(urls.owner) and holds_embedded_postgres(embedded_env)
    assert not holds_embedded_postgres(embedded_env)
    with pytest.raises(EmbeddedPostgresError, match="not running"):
        embedded_owner_url(embedded_env)

"""The embedded PostgreSQL (pgserver): start, reuse, survive a restart, stop with the last user."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from activities.db.embedded import (
    embedded_owner_url,
    embedded_pgdata,
    ensure_embedded_postgres,
    release_embedded_postgres,
)
from activities.db.engine import libpq_conninfo
from activities.db.errors import EmbeddedPostgresError

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: a concurrent pytest session may prune it under a live server.
    with tempfile.TemporaryDirectory(prefix="radiant-test-embedded-") as d:
        yield Path(d)


def test_embedded_server_reuses_data_across_restarts(data_dir: Path) -> None:
    url = ensure_embedded_postgres(data_dir)
    assert ensure_embedded_postgres(data_dir) == url  # second start: same running server
    assert embedded_owner_url(data_dir) == url
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("radiant",)
        conn.execute("CREATE TABLE survives (v int)")
        conn.execute("INSERT INTO survives VALUES (42)")

    release_embedded_postgres(data_dir)  # last holder: the server stops cleanly
    with pytest.raises(EmbeddedPostgresError, match="not running"):
        embedded_owner_url(data_dir)
    assert not (embedded_pgdata(data_dir) / "postmaster.pid").exists()

    url = ensure_embedded_postgres(data_dir)  # restart on the same data
    try:
        with psycopg.connect(libpq_conninfo(url)) as conn:
            assert conn.execute("SELECT v FROM survives").fetchone() == (42,)
    finally:
        release_embedded_postgres(data_dir)

"""The embedded PostgreSQL 16 (pgserver) used when no `database_url` is configured.

The data lives in `data_dir/postgres`, so it survives restarts; a second start (another process,
or a later run) reuses the running server or the existing data. pgserver records every process
holding a handle in `postgres/.handle_pids.json` and, with `cleanup_mode="stop"`, the last process
to exit stops the server: `radiant up` stopping stops PostgreSQL, while a `radiant db ...` run
beside a running stack leaves it alone.

pgserver listens on a unix socket only (no TCP port), so URLs carry the socket directory as the
`host` query parameter: `postgresql+psycopg://postgres@/radiant?host=/path/to/socket-dir`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Literal

import psycopg
from psycopg import sql
from sqlalchemy import URL

from activities.db.errors import EmbeddedPostgresError

log = logging.getLogger(__name__)

SUPERUSER = "postgres"  # pgserver's initdb user; trust auth on the socket
DATABASE = "radiant"  # our database beside pgserver's `postgres` maintenance database

CleanupMode = Literal["stop", "delete"]


def embedded_pgdata(data_dir: Path) -> Path:
    return Path(data_dir).expanduser().resolve() / "postgres"


def _pgserver() -> ModuleType:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without cleanup (kill -9) from pgserver's handle list;
    otherwise the last live process would never stop the server."""
    import psutil

    pgserver = _pgserver()
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with pgserver.PostgresServer._lock:
        from pgserver.utils import DiskList

        disk = DiskList(handles)
        try:
            pids = disk.get()
        except ValueError:  # corrupt file: start afresh
            pids = []
        alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
        if alive != pids:
            disk.put(alive)


def _owner_url_for(socket_dir: Path, port: int | None, database: str) -> URL:
    return URL.create(
        "postgresql+psycopg",
        username=SUPERUSER,
        database=database,
        query={"host": str(socket_dir), "port": str(port or 5432)},
    )


def ensure_embedded_postgres(
    data_dir: Path, *, database: str = DATABASE, cleanup_mode: CleanupMode = "stop"
) -> str:
    """Start (or reuse) the embedded server and its database; return the owner URL.

    This process is registered as a handle holder: the server stops when the last holder exits
    (or calls `release_embedded_postgres`). `cleanup_mode="delete"` also deletes the data then
    (throwaway servers in tests).
    """
    pgdata = embedded_pgdata(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgserver = _pgserver()
    try:
        _prune_dead_handles(pgdata)
        server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
        info = server.get_postmaster_info()
    except Exception as err:  # pgserver raises CalledProcessError/AssertionError/...
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL in {pgdata} failed to start: {err} (log: {pgdata / 'log'})"
        ) from err
    if info.socket_dir is None:
        raise EmbeddedPostgresError(f"embedded PostgreSQL in {pgdata} reports no unix socket")
    _ensure_database(info.socket_dir, info.port, database)
    url = _owner_url_for(info.socket_dir, info.port, database)
    return url.render_as_string(hide_password=False)


def embedded_owner_url(data_dir: Path, *, database: str = DATABASE) -> str:
    """The owner URL of an already running embedded server (without starting it)."""
    _pgserver()  # imports pgserver quietly
    from pgserver.utils import PostmasterInfo

    pgdata = embedded_pgdata(data_dir)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running() or info.socket_dir is None:
        raise EmbeddedPostgresError(f"embedded PostgreSQL in {pgdata} is not running")
    return _owner_url_for(info.socket_dir, info.port, database).render_as_string(
        hide_password=False
    )


def release_embedded_postgres(data_dir: Path) -> None:
    """Drop this process's handle; stops the server if no other process holds one.

    Also runs at interpreter exit (pgserver registers it with atexit), so calling it is only
    needed to stop earlier, e.g. on a signal.
    """
    pgserver = _pgserver()
    pgdata = embedded_pgdata(data_dir)
    server = pgserver.PostgresServer._instances.get(pgdata)
    if server is not None:
        # A child killed by SIGTERM (no atexit) must not keep the server alive forever.
        _prune_dead_handles(pgdata)
        server.cleanup()


def holds_embedded_postgres(data_dir: Path) -> bool:
    """Whether this process already holds a handle on the embedded server in `data_dir`.

    pgserver keeps one handle per data directory and process (`PostgresServer._instances`):
    a second `ensure_embedded_postgres` in the same process returns that same handle.
    """
    return embedded_pgdata(data_dir) in _pgserver().PostgresServer._instances


@contextmanager
def embedded_postgres_for_block(data_dir: Path | None) -> Iterator[None]:
    """Release the embedded server in `data_dir` at the end of the block only if the block
    acquired it (`None`: no embedded server is configured; nothing to do).

    A command run inside a process that already holds the server (`radiant demo` reports usage
    inside the stack's own process) shares the stack's handle: releasing it there would stop
    PostgreSQL under the running worker.
    """
    if data_dir is None:
        yield
        return
    held_before = holds_embedded_postgres(data_dir)
    try:
        yield
    finally:
        if not held_before and holds_embedded_postgres(data_dir):
            release_embedded_postgres(data_dir)


def _ensure_database(socket_dir: Path, port: int | None, database: str) -> None:
    """Create our database on first start (idempotent, also under concurrent starts)."""
    conninfo = psycopg.conninfo.make_conninfo(
        host=str(socket_dir), port=str(port or 5432), user=SUPERUSER, dbname="postgres"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            log.info("created embedded database %s", database)
        except psycopg.errors.DuplicateDatabase:
            pass  # a concurrent start created it first

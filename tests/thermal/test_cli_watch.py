"""`radiant watch` as a user runs it (a process of its own, against the migrated database): each
notification printed once, across a lost connection too; payloads over pg_notify's limit read
from the table; payloads printed as they are (never as Rich markup); Ctrl-C exits 130;
--app/--env/--model print only their notifications (earlier, live and caught up)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from activities.db.engine import libpq_conninfo
from tests.fixtures.postgres import MigratedDb

LINE_TIMEOUT_S = 30.0


@dataclass
class Watch:
    proc: asyncio.subprocess.Process
    app_name: str  # the watch's application_name in pg_stat_activity
    lines: list[str] = field(default_factory=list)  # stdout so far

    async def until(self, needle: str) -> str:
        """Read stdout up to the first new line containing `needle`."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(LINE_TIMEOUT_S):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    stderr = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"watch ended: {self.lines} {stderr.decode()}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if needle in line:
                    return line


async def _owner(db: MigratedDb) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(libpq_conninfo(db.owner_url), autocommit=True)


async def notify(
    db: MigratedDb,
    kind: str,
    payload: dict[str, Any],
    *,
    app_id: str | None = None,
    environment: str | None = None,
    model_id: str | None = None,
) -> None:
    async with await _owner(db) as conn:
        await conn.execute(
            "INSERT INTO notifications (kind, payload, app_id, environment, model_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            (kind, Jsonb(payload), app_id, environment, model_id),
        )


async def listening_backend(db: MigratedDb, watch: Watch, not_pid: int | None = None) -> int:
    """The watch's backend once it waits for notifications (LISTEN done, backlog read)."""
    async with await _owner(db) as conn, asyncio.timeout(LINE_TIMEOUT_S):
        while True:
            if watch.proc.returncode is not None:
                stderr = await watch.proc.stderr.read() if watch.proc.stderr else b""
                raise AssertionError(f"watch exited {watch.proc.returncode}: {stderr.decode()}")
            cur = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'idle' "
                "AND query LIKE 'SELECT %% FROM %%notifications%%'",
                (watch.app_name,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] != not_pid:
                return int(row[0])
            await asyncio.sleep(0.1)


@asynccontextmanager
async def watching(db: MigratedDb, data_dir: Path, *args: str) -> AsyncIterator[Watch]:
    app_name = f"watch-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIANT_")}
    env.update(
        RADIANT_DATABASE_URL=db.owner_url,
        RADIANT_APP_DATABASE_URL=db.app_url,
        RADIANT_DATA_DIR=str(data_dir),
        PGAPPNAME=app_name,  # libpq: how the test finds the watch's connection
        PYTHONUNBUFFERED="1",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli.main", "watch", "--since", "0", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield Watch(proc, app_name)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def printed(watch: Watch, marker: str) -> list[tuple[str, int]]:
    """(kind, payload n) of the JSON lines printed with `marker`, in order."""
    lines = [json.loads(line) for line in watch.lines if marker in line]
    return [(p["kind"], p["payload"]["n"]) for p in lines]


async def interrupt(watch: Watch) -> str:
    """Ctrl-C; the watch's stderr."""
    watch.proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(LINE_TIMEOUT_S):
        _, stderr = await watch.proc.communicate()
    assert watch.proc.returncode == 130, stderr.decode()
    return stderr.decode()


async def test_watch_survives_a_lost_connection(migrated_db: MigratedDb, tmp_path: Path):
    """The backend terminated (a restart, a failover): the watch reconnects, prints what was
    committed meanwhile once, and follows on; it used to exit 2."""
    marker = uuid.uuid4().hex
    async with watching(migrated_db, tmp_path, "--json") as watch:
        pid = await listening_backend(migrated_db, watch)
        await notify(migrated_db, "test.before", {"marker": marker, "n": 1})
        await watch.until(marker)
        async with await _owner(migrated_db) as conn:
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await notify(migrated_db, "test.during", {"marker": marker, "n": 2})
        await listening_backend(migrated_db, watch, not_pid=pid)
        await notify(migrated_db, "test.after", {"marker": marker, "n": 3})
        await watch.until('"test.after"')
        stderr = await interrupt(watch)
    assert printed(watch, marker) == [
        ("test.before", 1), ("test.during", 2), ("test.after", 3),
    ], watch.lines  # fmt: skip
    assert "lost the database connection" in stderr and "reconnecting" in stderr, stderr
    assert "the database is unavailable" not in stderr, stderr


async def test_a_lower_id_committed_while_disconnected_is_printed(
    migrated_db: MigratedDb, tmp_path: Path
):
    """Ids commit out of order: a row whose transaction took its id first but committed while
    the watch was reconnecting is printed too (the catch-up used to read above the highest id
    seen, which had already passed it)."""
    marker = uuid.uuid4().hex
    async with watching(migrated_db, tmp_path, "--json") as watch:
        pid = await listening_backend(migrated_db, watch)
        async with await _owner(migrated_db) as slow:
            await slow.set_autocommit(False)
            await slow.execute(
                "INSERT INTO notifications (kind, payload) VALUES (%s, %s)",
                ("test.slow", Jsonb({"marker": marker, "n": 1})),
            )  # its id is taken now; the commit comes later
            await notify(migrated_db, "test.fast", {"marker": marker, "n": 2})
            await watch.until('"test.fast"')
            async with await _owner(migrated_db) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await slow.commit()  # while the watch waits to reconnect (0.5 s)
        await listening_backend(migrated_db, watch, not_pid=pid)
        await notify(migrated_db, "test.after", {"marker": marker, "n": 3})
        await watch.until('"test.after"')
        await interrupt(watch)
    assert sorted(n for _, n in printed(watch, marker)) == [1, 2, 3], watch.lines


async def test_watch_reads_an_oversized_payload_from_the_table(
    migrated_db: MigratedDb, tmp_path: Path
):
    """Over ~7,900 bytes the NOTIFY message carries only `payload_truncated` and the id."""
    marker = uuid.uuid4().hex
    payload = {"marker": marker, "model_id": "yolov8n", "blob": "x" * 10_000}
    async with watching(migrated_db, tmp_path, "--json") as watch:
        await listening_backend(migrated_db, watch)
        await notify(migrated_db, "test.big", payload)
        line = await watch.until("test.big")
        await interrupt(watch)
    assert json.loads(line)["payload"] == payload


async def test_watch_prints_payloads_as_they_are(migrated_db: MigratedDb, tmp_path: Path):
    """Text output: a payload is data, not Rich markup (`[/opt/ml/model]` used to raise
    MarkupError and end the watch; `[i-0a1b2c3d4e]` vanished as a style)."""
    error = "[i-0a1b2c3d4e] ERROR volume [/opt/ml/model] is full"
    async with watching(migrated_db, tmp_path) as watch:
        await listening_backend(migrated_db, watch)
        await notify(migrated_db, "test.failed", {"model_id": "[yolo]", "error": error})
        line = await watch.until("test.failed")
        await notify(migrated_db, "test.next", {"model_id": "yolov8n"})
        await watch.until("test.next")  # still watching
        await interrupt(watch)
    assert " test.failed [yolo] " in line and json.dumps(error) in line, line


async def test_a_row_committed_between_listen_and_the_backlog_prints_once(
    migrated_db: MigratedDb, tmp_path: Path
):
    """LISTEN comes first (nothing committed later is missed), so a row committed before the
    backlog's SELECT is both notified and selected: printed once."""
    marker = uuid.uuid4().hex
    async with await _owner(migrated_db) as owner:
        await owner.execute("BEGIN")
        # The watch's backlog SELECT waits for this lock: its LISTEN is done by then.
        await owner.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
        await owner.execute(
            "INSERT INTO notifications (kind, payload) VALUES ('test.race', %s)",
            (Jsonb({"marker": marker}),),
        )
        async with watching(migrated_db, tmp_path, "--json", "--since", "5") as watch:
            await _waiting_for_a_lock(migrated_db, watch.app_name)
            await owner.execute("COMMIT")  # NOTIFY delivered at commit, then the SELECT runs
            await watch.until(marker)
            await notify(migrated_db, "test.next", {"marker": "next"})
            await watch.until('"test.next"')
            await interrupt(watch)
    assert sum(marker in line for line in watch.lines) == 1, watch.lines


def _scoped_app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"  # the database is shared: a scope of this test's own


async def notify_around(db: MigratedDb, marker: str, app: str, n: int) -> None:
    """Notifications just outside the scope `--app app --env prod --model yolov8x`: another
    app, another environment, another model, no model (a service's), no app at all (the
    fleet's reconcile report), and one over pg_notify's limit; each with `n` in its payload."""
    payload = {"marker": marker, "n": n}
    for app_id, env, model in [
        (_scoped_app(), "prod", "yolov8x"),
        (app, "staging", "yolov8x"),
        (app, "prod", "yolov8n"),
        (app, "prod", None),
    ]:
        await notify(db, "test.out", payload, app_id=app_id, environment=env, model_id=model)
    await notify(db, "thermal.reconcile", payload)
    big = {**payload, "blob": "x" * 10_000}
    await notify(db, "test.out", big, app_id=app, environment="prod", model_id="yolov8n")


async def test_a_scoped_watch_follows_only_its_notifications(
    migrated_db: MigratedDb, tmp_path: Path
):
    """Live: the NOTIFY messages of other apps, environments and models, and those naming no
    app (reconcile reports), are not printed; --model takes an alias."""
    marker, app = uuid.uuid4().hex, _scoped_app()
    scope = ("--app", app, "--env", "prod", "--model", "yolov8")  # yolov8: alias of yolov8x
    async with watching(migrated_db, tmp_path, "--json", *scope) as watch:
        await listening_backend(migrated_db, watch)
        await notify_around(migrated_db, marker, app, 1)
        await notify(
            migrated_db, "test.in", {"marker": marker, "n": 2},
            app_id=app, environment="prod", model_id="yolov8x",
        )  # fmt: skip
        await watch.until('"test.in"')
        await interrupt(watch)
    assert printed(watch, marker) == [("test.in", 2)], watch.lines


async def test_a_scoped_backlog_counts_only_its_notifications(
    migrated_db: MigratedDb, tmp_path: Path
):
    """--since N: the N latest notifications in scope, however many others came after them."""
    marker, app = uuid.uuid4().hex, _scoped_app()
    for n in (1, 2, 3):
        await notify(
            migrated_db, "test.in", {"marker": marker, "n": n},
            app_id=app, environment="prod", model_id="yolov8x",
        )  # fmt: skip
    await notify_around(migrated_db, marker, app, 4)
    args = ("--json", "--app", app, "--env", "prod", "--model", "yolov8x")
    async with watching(migrated_db, tmp_path, *args, "--since", "2", "--no-follow") as watch:
        async with asyncio.timeout(LINE_TIMEOUT_S):
            out, err = await watch.proc.communicate()
    assert watch.proc.returncode == 0, err.decode()
    watch.lines = out.decode().splitlines()
    assert printed(watch, marker) == [("test.in", 2), ("test.in", 3)], watch.lines


async def test_a_scoped_watch_catches_up_only_its_notifications(
    migrated_db: MigratedDb, tmp_path: Path
):
    """After a lost connection the rows committed meanwhile are read by id: those in scope."""
    marker, app = uuid.uuid4().hex, _scoped_app()
    scope = {"app_id": app, "environment": "prod", "model_id": "yolov8x"}
    args = ("--json", "--app", app, "--env", "prod", "--model", "yolov8x")
    async with watching(migrated_db, tmp_path, *args) as watch:
        pid = await listening_backend(migrated_db, watch)
        await notify(migrated_db, "test.before", {"marker": marker, "n": 1}, **scope)
        await watch.until(marker)
        async with await _owner(migrated_db) as conn:
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await notify_around(migrated_db, marker, app, 2)
        await notify(migrated_db, "test.during", {"marker": marker, "n": 3}, **scope)
        await listening_backend(migrated_db, watch, not_pid=pid)
        await notify(migrated_db, "test.after", {"marker": marker, "n": 4}, **scope)
        await watch.until('"test.after"')
        await interrupt(watch)
    assert printed(watch, marker) == [
        ("test.before", 1), ("test.during", 3), ("test.after", 4),
    ], watch.lines  # fmt: skip


async def _waiting_for_a_lock(db: MigratedDb, app_name: str) -> None:
    # A connection of its own: pg_stat_activity stays as it was for a transaction's duration.
    async with await _owner(db) as conn, asyncio.timeout(LINE_TIMEOUT_S):
        while True:
            cur = await conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock'",
                (app_name,),
            )
            if await cur.fetchone():
                return
            await asyncio.sleep(0.1)


def test_each_id_is_printed_once_even_out_of_order(capsys):
    """Ids can commit out of order: a lower id after a higher one is still new."""
    from workers.cli.thermal import _RecentIds, _Watcher

    watcher = _Watcher(as_json=True)
    for row_id in (5, 7, 5, 6, 7):
        watcher.show(row_id, "2026-12-03T12:13:35Z", "test", {"id": row_id})
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["payload"]["id"] for line in out] == [5, 7, 6]
    assert watcher.last_id == 7

    recent = _RecentIds(size=3)
    assert all(recent.add(i) for i in range(5))
    assert not recent.add(4) and recent.add(0)  # 0 forgotten: the memory is bounded
